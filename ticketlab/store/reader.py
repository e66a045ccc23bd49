"""Reading a ticket file: :func:`open_ticket`, :class:`TicketFile` and :func:`read_state`.

A :class:`TicketFile` is a read-only, consistent snapshot of one run; nothing is loaded until asked for, and
every error the file causes names it (see :mod:`ticketlab.store.schema`).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Iterator

import h5py
import numpy as np

from ticketlab.errors import ConfigError, TicketFileError
from ticketlab.evaluation import Evaluation
from ticketlab.masks import TensorInfo, compression, density, sparsity, unpack_mask
from ticketlab.store.schema import DatasetInfo, _errors, _level_key, _open_h5

__all__ = ["open_ticket", "TicketFile", "read_state"]


def open_ticket(path: str | os.PathLike, *, locking: bool | None = None) -> "TicketFile":
    """Open a ticket file read-only; see :class:`TicketFile`.

    Parameters
    ----------
    path : path-like
        The ``.h5`` ticket file.
    locking : bool, optional
        Passed to ``h5py.File``; ``False`` helps on NFS, where HDF5 file locking fails.
    """
    return TicketFile(path, locking=locking)


class TicketFile:
    """A ticket file opened read-only: a consistent snapshot of the run as it was when opened.

    Nothing is loaded until asked for: masks, weights and evaluations are read one dataset at a time. The file
    stays open until :meth:`close` (or the end of a ``with`` block); writers never modify an open file in place
    (they replace it atomically), so a long-lived object keeps seeing the levels that existed when it was
    opened — open the file again to see levels a running training has added since.

    Every error caused by the file (missing, not HDF5, truncated, not a ticket file, newer schema, no such
    level or branch) is a :class:`ticketlab.errors.TicketFileError` whose message names the file.
    """

    def __init__(self, path: str | os.PathLike, *, locking: bool | None = None) -> None:
        self.path = Path(path)
        self._locking = locking
        self._h5: h5py.File | None = _open_h5(self.path, "r", locking)
        try:
            with _errors(self.path):
                self.schema_version = int(self._h5.attrs["schema_version"])
                self._tensors = self._read_tensors(self._h5)
                self._tensor_index = {t.name: t for t in self._tensors}
        except BaseException:
            self.close()
            raise

    # -- handle management -------------------------------------------------------------------------------

    def __enter__(self) -> "TicketFile":
        if self._h5 is None:
            self._h5 = _open_h5(self.path, "r", self._locking)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the file handle; later calls reopen the file for the duration of each call."""
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def __repr__(self) -> str:
        return f"<TicketFile {str(self.path)!r}>"

    @contextlib.contextmanager
    def _file(self) -> Iterator[h5py.File]:
        if self._h5 is not None:
            yield self._h5
            return
        f = _open_h5(self.path, "r", self._locking)
        try:
            yield f
        finally:
            f.close()

    def _attr(self, name: str, default: Any = None) -> Any:
        with self._file() as f, _errors(self.path):
            value = f.attrs.get(name, default)
        return value.item() if isinstance(value, np.generic) else value

    # -- provenance ----------------------------------------------------------------------------------------

    @property
    def status(self) -> str:
        """``"in_progress"`` while a run is writing levels, ``"complete"`` when it finished, or ``"failed"``."""
        return self._attr("status")

    @property
    def model(self) -> str:
        """Model name (registry name for runs made by ticketlab, free text for imports)."""
        return self._attr("model", "")

    @property
    def method(self) -> str:
        """Short description of how the masks were made, e.g. ``"IMP layer_magnitude 20%/level, rewind-init"``."""
        return self._attr("method", "")

    @property
    def seed(self) -> int | None:
        """The run's seed (``None`` when unknown, e.g. for imports)."""
        seed = self._attr("seed", -1)
        return None if seed is None or int(seed) < 0 else int(seed)

    @property
    def provenance(self) -> dict[str, Any]:
        """Every root attribute: format, schema version, status, creation and update times, versions, seed."""
        with self._file() as f, _errors(self.path):
            return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}

    @property
    def config(self) -> dict[str, Any]:
        """The full run configuration (decoded from the ``/config`` JSON dataset)."""
        with self._file() as f, _errors(self.path):
            return json.loads(f["config"].asstr()[()])

    @property
    def tensors(self) -> list[TensorInfo]:
        """The masked tensors in model order (name, shape, kind, pruned)."""
        return list(self._tensors)

    @staticmethod
    def _read_tensors(f: h5py.File) -> list[TensorInfo]:
        g = f["model"]
        names = g["names"].asstr()[()]
        kinds = g["kinds"].asstr()[()]
        shapes = g["shapes"][()]
        pruned = g["pruned"][()]
        return [
            TensorInfo(str(n), tuple(int(s) for s in sh), str(k), bool(p))
            for n, k, sh, p in zip(names, kinds, shapes, pruned)
        ]

    @property
    def dataset(self) -> DatasetInfo | None:
        """The evaluation dataset (name, classes, test labels), or ``None`` if the file records none."""
        with self._file() as f, _errors(self.path):
            if "dataset" not in f:
                return None
            g = f["dataset"]
            labels = g["test_labels"][()].astype(np.int64) if "test_labels" in g else None
            names = tuple(g["class_names"].asstr()[()]) if "class_names" in g else ()
            return DatasetInfo(str(g.attrs["name"]), int(g.attrs["num_classes"]), names, labels)

    # -- levels and branches -------------------------------------------------------------------------------

    @property
    def levels(self) -> list[int]:
        """Completed levels in increasing order (0 = the dense network)."""
        with self._file() as f, _errors(self.path):
            return sorted(int(k) for k in f["levels"].keys())

    def _level(self, f: h5py.File, level: int, branch: str | None = None) -> h5py.Group:
        levels = f["levels"]
        key = _level_key(level)
        if key not in levels:
            present = sorted(int(k) for k in levels.keys())
            listing = ", ".join(map(str, present)) if present else "none yet"
            raise TicketFileError(f"{self.path}: no level {level}; levels present: {listing}")
        g = levels[key]
        if branch is None:
            return g
        branches = g.get("branches")
        if branches is None or branch not in branches:
            names = ", ".join(branches.keys()) if branches is not None and len(branches) else "none"
            raise TicketFileError(f"{self.path}: level {level} has no branch {branch!r}; branches: {names}")
        return branches[branch]

    def branches(self, level: int) -> list[str]:
        """Names of the control branches trained on ``level``'s mask (e.g. ``["reinit", "shuffle"]``)."""
        with self._file() as f, _errors(self.path):
            g = self._level(f, level)
            return list(g["branches"].keys()) if "branches" in g else []

    def branch_info(self, level: int, branch: str) -> dict[str, Any]:
        """Attributes of a branch: its kind, seed and description."""
        with self._file() as f, _errors(self.path):
            return {k: (v.item() if isinstance(v, np.generic) else v)
                    for k, v in self._level(f, level, branch).attrs.items()}

    def level_attrs(self, level: int, *, branch: str | None = None) -> dict[str, Any]:
        """The attributes of a level's (or branch's) group: created, kept, size, density and what the writer
        added (e.g. ``rate``, ``wall_time``; importers record source iterations here)."""
        with self._file() as f, _errors(self.path):
            return {k: (v.item() if isinstance(v, np.generic) else v)
                    for k, v in self._level(f, level, branch).attrs.items()}

    # -- masks ---------------------------------------------------------------------------------------------

    def _names(self, names: Iterable[str] | None) -> list[str]:
        if names is None:
            return [t.name for t in self._tensors]
        names = [names] if isinstance(names, str) else list(names)
        unknown = [n for n in names if n not in self._tensor_index]
        if unknown:
            raise TicketFileError(
                f"{self.path}: no tensor {unknown[0]!r}; tensors: {', '.join(self._tensor_index)}"
            )
        return names

    def masks(self, level: int, names: Iterable[str] | None = None, *, branch: str | None = None
              ) -> dict[str, np.ndarray]:
        """Masks of ``level`` (or of one of its branches) as ``{name: bool array}`` in model order.

        Parameters
        ----------
        level : int
            0 is the dense network; level L is the mask after L pruning steps.
        names : iterable of str, optional
            Read only these tensors (one dataset read each). Default: all.
        branch : str, optional
            A control branch of the level (see :meth:`branches`).
        """
        names = self._names(names)
        with self._file() as f, _errors(self.path):
            g = self._level(f, level, branch)["masks"]
            return {name: unpack_mask(g[name][()], self._tensor_index[name].shape) for name in names}

    def packed_mask(self, level: int, name: str, *, branch: str | None = None) -> np.ndarray:
        """One tensor's mask as stored: ``numpy.packbits`` of the C-order flattened mask, uint8 of
        ``ceil(size / 8)`` bytes (bits past ``size`` are 0). Eight times smaller than :meth:`mask`; popcount-based
        analyses use it directly."""
        self._names([name])
        with self._file() as f, _errors(self.path):
            return self._level(f, level, branch)["masks"][name][()]

    def mask(self, level: int, name: str, *, branch: str | None = None) -> np.ndarray:
        """One tensor's mask at ``level``: a boolean array of the tensor's shape (one dataset read)."""
        return self.masks(level, [name], branch=branch)[name]

    def kept(self, level: int, *, branch: str | None = None) -> dict[str, int]:
        """Kept weights per tensor at ``level``, read from the stored counts without unpacking any mask."""
        names = [t.name for t in self._tensors]
        with self._file() as f, _errors(self.path):
            counts = self._level(f, level, branch)["kept"][()]
        return {n: int(c) for n, c in zip(names, counts)}

    # -- weights -------------------------------------------------------------------------------------------

    def checkpoints(self) -> list[str]:
        """The run-wide weight checkpoints present: ``"init"`` and, when rewinding, ``"rewind"``."""
        with self._file() as f, _errors(self.path):
            return list(f["weights"].keys()) if "weights" in f else []

    def weights(self, point: str | None = None, *, level: int | None = None, branch: str | None = None,
                names: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """Read a weight checkpoint as ``{state-dict key: array}`` (parameters and buffers).

        - ``weights("init")``: the initial weights of the run; ``weights("rewind")``: the rewind point.
        - ``weights(level=L)``: the weights at the end of level L's training (if the run saved them).
        - ``weights("init", level=L, branch=B)`` / ``weights(level=L, branch=B)``: a branch's initial or
          trained weights.

        Masked tensors stored in the compact "kept values only" layout are expanded, with pruned entries 0.
        bfloat16 weights come back as float32 (exact); the original dtype is in
        :meth:`weight_dtypes`.
        """
        with self._file() as f, _errors(self.path):
            g, mask_group = self._weights_group(f, point, level, branch)
            keys = list(g.keys())
            if names is not None:
                wanted = [names] if isinstance(names, str) else list(names)
                missing = [n for n in wanted if n not in g]
                if missing:
                    raise TicketFileError(f"{self.path}: checkpoint has no weight {missing[0]!r}")
                keys = wanted
            out = {}
            for key in keys:
                d = g[key]
                if d.attrs.get("layout") == "kept_values":
                    shape = tuple(d.attrs["shape"])
                    m = unpack_mask(mask_group[key][()], shape)
                    full = np.zeros(shape, dtype=d.dtype)
                    full[m] = d[()]
                    out[key] = full
                else:
                    out[key] = d[()]
            return out

    def weight_dtypes(self, point: str | None = None, *, level: int | None = None,
                      branch: str | None = None) -> dict[str, str]:
        """The torch dtype each stored weight had when written (e.g. ``"bfloat16"``), where recorded."""
        with self._file() as f, _errors(self.path):
            g, _ = self._weights_group(f, point, level, branch)
            return {k: str(d.attrs.get("torch_dtype", d.dtype)) for k, d in g.items()}

    def _weights_group(self, f: h5py.File, point: str | None, level: int | None, branch: str | None
                       ) -> tuple[h5py.Group, h5py.Group | None]:
        if level is None:
            if branch is not None:
                raise ConfigError("a branch's weights need its level: weights(..., level=L, branch=B)")
            point = point or "init"
            if "weights" not in f or point not in f["weights"]:
                have = ", ".join(f["weights"].keys()) if "weights" in f else "none"
                raise TicketFileError(f"{self.path}: no {point!r} weights; checkpoints present: {have}")
            return f["weights"][point], None
        g = self._level(f, level, branch)
        point = point or "trained"
        key = {"trained": "weights", "init": "init_weights"}.get(point)
        if key is None:
            raise ConfigError(f"point must be 'trained' or 'init' for a level's weights; got {point!r}")
        if key not in g:
            where = f"level {level}" + (f" branch {branch!r}" if branch else "")
            raise TicketFileError(f"{self.path}: {where} has no stored {point} weights")
        return g[key], g["masks"]

    # -- evaluation ----------------------------------------------------------------------------------------

    def evaluation(self, level: int, *, branch: str | None = None) -> Evaluation | None:
        """The test-set :class:`~ticketlab.evaluation.Evaluation` of ``level`` (or a branch); ``None`` if not
        evaluated (e.g. an imported mask)."""
        with self._file() as f, _errors(self.path):
            g = self._level(f, level, branch)
            if "eval" not in g or "predictions" not in g["eval"]:
                return None  # not evaluated, or only logged metrics (see level_record)
            e = g["eval"]
            es = int(e.attrs["early_stop_iteration"])
            return Evaluation(
                loss=float(e.attrs["loss"]),
                predictions=e["predictions"][()],
                confusion=e["confusion"][()],
                curve={k: v[()] for k, v in e["curve"].items()},
                early_stop_iteration=None if es < 0 else es,
                iterations=int(e.attrs["iterations"]),
                wall_time=float(e.attrs["wall_time"]),
            )

    # -- summaries -----------------------------------------------------------------------------------------

    def level_record(self, level: int, *, branch: str | None = None) -> dict[str, Any]:
        """One level's headline numbers, read without unpacking masks or loading predictions.

        Keys: level, branch, kept, size, density, sparsity, compression (over all masked tensors),
        accuracy, loss, early_stop_iteration, iterations, wall_time (seconds).
        """
        with self._file() as f, _errors(self.path):
            g = self._level(f, level, branch)
            kept, size = int(g.attrs["kept"]), int(g.attrs["size"])
            rec: dict[str, Any] = {
                "level": int(level),
                "branch": branch,
                "kept": kept,
                "size": size,
                "density": density(kept, size),
                "sparsity": sparsity(kept, size),
                "compression": compression(kept, size),
                "accuracy": None,
                "loss": None,
                "early_stop_iteration": None,
                "iterations": None,
                "wall_time": None,
            }
            if "eval" in g:
                e = g["eval"]
                es = int(e.attrs["early_stop_iteration"])
                rec.update(
                    accuracy=float(e.attrs["accuracy"]),
                    loss=float(e.attrs["loss"]),
                    early_stop_iteration=None if es < 0 else es,
                    iterations=int(e.attrs["iterations"]),
                    wall_time=float(e.attrs["wall_time"]),
                )
            return rec

    def summary(self, *, branches: bool = True) -> "Any":
        """A pandas DataFrame with one row per level (and per branch when ``branches``); see :meth:`level_record`."""
        import pandas as pd

        with self:
            rows = []
            for level in self.levels:
                rows.append(self.level_record(level))
                if branches:
                    rows.extend(self.level_record(level, branch=b) for b in self.branches(level))
        return pd.DataFrame(rows)

    def layer_summary(self, levels: Iterable[int] | None = None) -> "Any":
        """A tidy pandas DataFrame with one row per (level, tensor): size, kept, density, sparsity,
        compression, kind, pruned. Reads only the stored per-tensor counts."""
        import pandas as pd

        with self:
            tensors = self.tensors
            rows = []
            for level in self.levels if levels is None else levels:
                kept = self.kept(level)
                for t in tensors:
                    k = kept[t.name]
                    rows.append({
                        "level": level, "layer": t.name, "kind": t.kind, "shape": "x".join(map(str, t.shape)),
                        "pruned": t.pruned, "size": t.size, "kept": k, "density": density(k, t.size),
                        "sparsity": sparsity(k, t.size), "compression": compression(k, t.size),
                    })
        return pd.DataFrame(rows)


def read_state(path: str | os.PathLike, name: str) -> dict[str, Any] | None:
    """The JSON document stored by :meth:`~ticketlab.store.TicketWriter.write_state`, or ``None``."""
    path = Path(path)
    with TicketFile(path)._file() as f, _errors(path):
        if "state" not in f or name not in f["state"]:
            return None
        return json.loads(f["state"][name].asstr()[()])
