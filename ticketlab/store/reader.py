"""Reading a ticket file: :func:`open_ticket`, :class:`TicketFile` and :func:`read_state`.

A :class:`TicketFile` is a read-only, consistent snapshot of one run; nothing is loaded until asked for, and
every error the file causes names it and the object in it. Everything read is checked before it is used or
allocated (:mod:`ticketlab.store.checks`): attribute types and ranges, the tensor table, dataset shapes, kept
counts against the mask bits, evaluations against their predictions.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterable, Iterator

import h5py
import numpy as np

from ticketlab.errors import ConfigError, TicketFileError
from ticketlab.evaluation import Evaluation
from ticketlab.masks import TensorInfo, compression, density, sparsity, unpack_mask
from ticketlab.store.checks import attr, child, keys, read_json
from ticketlab.store.contents import (check_bits, check_level_attrs, check_level_group, checksum_census,
                                      dataset_info, eval_numbers, group_attrs, has_predictions, level_numbers,
                                      read_evaluation, read_kept, read_packed, read_weight, root_attrs, status,
                                      tensor_table)
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
    level or branch, a damaged or inconsistent object) is a :class:`ticketlab.errors.TicketFileError` whose
    message names the file and the object in it. Stored kept counts are checked against the mask bits, and
    evaluations against their predictions, whenever they are read; data written with checksums is verified by
    HDF5 (see :meth:`checksums`).
    """

    def __init__(self, path: str | os.PathLike, *, locking: bool | None = None) -> None:
        self.path = Path(path)
        self._locking = locking
        self._checked: dict[tuple, Any] = {}  # what was verified while the handle is open
        self._depth = 0  # nesting of `with` blocks
        self._h5: h5py.File | None = None
        self._h5 = _open_h5(self.path, "r", locking)
        try:
            with _errors(self.path):
                self.schema_version = int(attr(self.path, self._h5, "schema_version", "int"))
                self._tensors = tensor_table(self.path, self._h5)
                self._tensor_index = {t.name: t for t in self._tensors}
                self._position = {t.name: i for i, t in enumerate(self._tensors)}
        except BaseException:
            self.close()
            raise

    # -- handle management -------------------------------------------------------------------------------

    def __enter__(self) -> "TicketFile":
        if self._h5 is None:
            self._h5 = _open_h5(self.path, "r", self._locking)
        self._depth += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self._depth = max(0, self._depth - 1)
        if self._depth == 0:  # nested blocks (e.g. summary() inside the caller's) keep the handle open
            self.close()

    def close(self) -> None:
        """Close the file handle; later calls reopen the file for the duration of each call."""
        self._checked.clear()
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def __repr__(self) -> str:
        return f"<TicketFile {str(self.path)!r}>"

    @contextlib.contextmanager
    def _held(self) -> Iterator[None]:
        """One handle for a whole summary: the one already open, or one opened here and closed after."""
        if self._h5 is not None:
            yield
            return
        with self:
            yield

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

    def _once(self, key: tuple, compute: Any) -> Any:
        """``compute()``, remembered while the file stays open (a reopened file may have been replaced)."""
        if self._h5 is None:
            return compute()
        if key not in self._checked:
            self._checked[key] = compute()
        return self._checked[key]

    def _attr(self, name: str, kind: str, default: Any = None) -> Any:
        with self._file() as f, _errors(self.path):
            return attr(self.path, f, name, kind, default)

    # -- provenance ----------------------------------------------------------------------------------------

    @property
    def status(self) -> str:
        """``"in_progress"`` while a run is writing levels, ``"complete"`` when it finished, or ``"failed"``."""
        with self._file() as f, _errors(self.path):
            return status(self.path, attr(self.path, f, "status", "str"))

    @property
    def model(self) -> str:
        """Model name (registry name for runs made by ticketlab, free text for imports)."""
        return self._attr("model", "str", "")

    @property
    def method(self) -> str:
        """Short description of how the masks were made, e.g. ``"IMP layer_magnitude 20%/level, rewind-init"``."""
        return self._attr("method", "str", "")

    @property
    def seed(self) -> int | None:
        """The run's seed (``None`` when unknown, e.g. for imports)."""
        seed = self._attr("seed", "int", -1)
        return None if seed < 0 else int(seed)

    @property
    def provenance(self) -> dict[str, Any]:
        """Every root attribute: format, schema version, status, creation and update times, versions, seed."""
        with self._file() as f, _errors(self.path):
            return root_attrs(self.path, f)

    @property
    def config(self) -> dict[str, Any]:
        """The full run configuration (decoded from the ``/config`` JSON dataset)."""
        with self._file() as f, _errors(self.path):
            return read_json(self.path, child(self.path, f, "config", h5py.Dataset))

    @property
    def tensors(self) -> list[TensorInfo]:
        """The masked tensors in model order (name, shape, kind, pruned)."""
        return list(self._tensors)

    @property
    def dataset(self) -> DatasetInfo | None:
        """The evaluation dataset (name, classes, test labels), or ``None`` if the file records none."""
        with self._file() as f, _errors(self.path):
            return self._dataset(f)

    def _dataset(self, f: h5py.File) -> DatasetInfo | None:
        return self._once(("dataset",), lambda: dataset_info(self.path, f))

    def checksums(self) -> dict[str, Any]:
        """Which stored data HDF5 verifies on every read (the ``fletcher32`` filter, on masks, kept counts,
        weights, evaluations and test labels of files written since checksums were introduced).

        Returns ``{"datasets": n, "without": m, "example": name of one without, or None}``: ``m == 0`` for a
        file written with checksums, ``m == n`` for one written before; in between, some objects were written by
        an older ticketlab or another tool.
        """
        with self._file() as f, _errors(self.path):
            n, m, example = checksum_census(self.path, f)
        return {"datasets": n, "without": m, "example": example}

    # -- levels and branches -------------------------------------------------------------------------------

    @property
    def levels(self) -> list[int]:
        """Completed levels in increasing order (0 = the dense network)."""
        with self._file() as f, _errors(self.path):
            return list(self._levels(f))

    def _levels(self, f: h5py.File) -> list[int]:
        return self._once(("levels",), lambda: level_numbers(self.path, child(self.path, f, "levels", h5py.Group)))

    def _level(self, f: h5py.File, level: int, branch: str | None = None) -> h5py.Group:
        return self._once(("group", int(level), branch), lambda: self._find_level(f, level, branch))

    def _find_level(self, f: h5py.File, level: int, branch: str | None) -> h5py.Group:
        present = self._levels(f)
        levels = child(self.path, f, "levels", h5py.Group)
        if int(level) not in present:
            listing = ", ".join(map(str, present)) if present else "none yet"
            raise TicketFileError(f"{self.path}: no level {level}; levels present: {listing}")
        g = child(self.path, levels, _level_key(level), h5py.Group)
        check_level_group(self.path, g, int(level))
        if branch is None:
            return g
        branches = child(self.path, g, "branches", h5py.Group, required=False)
        names = [] if branches is None else keys(self.path, branches)
        if branch not in names:
            raise TicketFileError(f"{self.path}: level {level} has no branch {branch!r}; branches: "
                                  f"{', '.join(names) if names else 'none'}")
        return child(self.path, branches, branch, h5py.Group)

    def branches(self, level: int) -> list[str]:
        """Names of the control branches trained on ``level``'s mask (e.g. ``["reinit", "shuffle"]``)."""
        with self._file() as f, _errors(self.path):
            branches = child(self.path, self._level(f, level), "branches", h5py.Group, required=False)
            return [] if branches is None else keys(self.path, branches)

    def branch_info(self, level: int, branch: str) -> dict[str, Any]:
        """Attributes of a branch: its kind, seed and description."""
        return self.level_attrs(level, branch=branch)

    def level_attrs(self, level: int, *, branch: str | None = None) -> dict[str, Any]:
        """The attributes of a level's (or branch's) group: created, kept, size, density and what the writer
        added (e.g. ``rate``, ``wall_time``; importers record source iterations here)."""
        with self._file() as f, _errors(self.path):
            return group_attrs(self.path, self._level(f, level, branch))

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
            g = self._level(f, level, branch)
            return {name: unpack_mask(self._packed(g, name), self._tensor_index[name].shape) for name in names}

    def _packed(self, g: h5py.Group, name: str) -> np.ndarray:
        """One tensor's packed mask from a level (or branch) group, its bits checked against the kept count."""
        t, i = self._tensor_index[name], self._position[name]
        kept = self._once(("kept", g.name), lambda: read_kept(self.path, g, self._tensors))
        d, packed = read_packed(self.path, child(self.path, g, "masks", h5py.Group), t)
        check_bits(self.path, d, packed, t, int(kept[i]))
        return packed

    def packed_mask(self, level: int, name: str, *, branch: str | None = None) -> np.ndarray:
        """One tensor's mask as stored: ``numpy.packbits`` of the C-order flattened mask, uint8 of
        ``ceil(size / 8)`` bytes (bits past ``size`` are 0). Eight times smaller than :meth:`mask`; popcount-based
        analyses use it directly."""
        self._names([name])
        with self._file() as f, _errors(self.path):
            return self._packed(self._level(f, level, branch), name)

    def mask(self, level: int, name: str, *, branch: str | None = None) -> np.ndarray:
        """One tensor's mask at ``level``: a boolean array of the tensor's shape (one dataset read)."""
        return self.masks(level, [name], branch=branch)[name]

    def kept(self, level: int, *, branch: str | None = None) -> dict[str, int]:
        """Kept weights per tensor at ``level``: the stored counts, checked against the mask bits (each mask is
        read and its set bits counted, without unpacking)."""
        with self._file() as f, _errors(self.path):
            counts, _, _ = self._verified(f, level, branch)
        return {t.name: int(c) for t, c in zip(self._tensors, counts)}

    def _verified(self, f: h5py.File, level: int, branch: str | None) -> tuple[np.ndarray, int, int]:
        """A level's (or branch's) kept counts, checked against its attributes and every mask's bits; returns
        (per-tensor counts, total kept, total size)."""
        g = self._level(f, level, branch)

        def verify() -> tuple[np.ndarray, int, int]:
            kept = read_kept(self.path, g, self._tensors)
            total, size = check_level_attrs(self.path, g, kept, self._tensors)
            masks = child(self.path, g, "masks", h5py.Group)
            for t, k in zip(self._tensors, kept):
                d, packed = read_packed(self.path, masks, t)
                check_bits(self.path, d, packed, t, int(k))
            return kept, total, size

        return self._once(("verified", g.name), verify)

    # -- weights -------------------------------------------------------------------------------------------

    def checkpoints(self) -> list[str]:
        """The run-wide weight checkpoints present: ``"init"`` and, when rewinding, ``"rewind"``."""
        with self._file() as f, _errors(self.path):
            w = child(self.path, f, "weights", h5py.Group, required=False)
            return [] if w is None else keys(self.path, w)

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
            g, level_group = self._weights_group(f, point, level, branch)
            stored = keys(self.path, g)
            wanted = stored
            if names is not None:
                wanted = [names] if isinstance(names, str) else list(names)
                missing = [n for n in wanted if n not in stored]
                if missing:
                    raise TicketFileError(f"{self.path}: checkpoint has no weight {missing[0]!r}")
            out = {}
            for key in wanted:
                t = self._tensor_index.get(key)
                mask = None
                if level_group is not None and t is not None:
                    mask = unpack_mask(self._packed(level_group, key), t.shape)
                out[key] = read_weight(self.path, child(self.path, g, key, h5py.Dataset), t, mask)
            return out

    def has_weights(self, point: str | None = None, *, level: int | None = None, branch: str | None = None
                    ) -> bool:
        """Whether the checkpoint that :meth:`weights` with these arguments reads is stored (nothing is read).
        A damaged file raises :class:`TicketFileError` instead of answering ``False``: callers that fall back to
        other weights when none are stored must not fall back when the stored ones are damaged."""
        with self._file() as f, _errors(self.path):
            if level is None:
                w = child(self.path, f, "weights", h5py.Group, required=False)
                return w is not None and child(self.path, w, point or "init", h5py.Group, required=False) is not None
            key = {"trained": "weights", "init": "init_weights"}.get(point or "trained")
            if key is None:
                raise ConfigError(f"point must be 'trained' or 'init' for a level's weights; got {point!r}")
            return child(self.path, self._level(f, level, branch), key, h5py.Group, required=False) is not None

    def weight_dtypes(self, point: str | None = None, *, level: int | None = None,
                      branch: str | None = None) -> dict[str, str]:
        """The torch dtype each stored weight had when written (e.g. ``"bfloat16"``), where recorded."""
        with self._file() as f, _errors(self.path):
            g, _ = self._weights_group(f, point, level, branch)
            out = {}
            for k in keys(self.path, g):
                d = child(self.path, g, k, h5py.Dataset)
                out[k] = attr(self.path, d, "torch_dtype", "str", str(d.dtype))
            return out

    def _weights_group(self, f: h5py.File, point: str | None, level: int | None, branch: str | None
                       ) -> tuple[h5py.Group, h5py.Group | None]:
        if level is None:
            if branch is not None:
                raise ConfigError("a branch's weights need its level: weights(..., level=L, branch=B)")
            point = point or "init"
            w = child(self.path, f, "weights", h5py.Group, required=False)
            have = [] if w is None else keys(self.path, w)
            if point not in have:
                raise TicketFileError(f"{self.path}: no {point!r} weights; checkpoints present: "
                                      f"{', '.join(have) or 'none'}")
            return child(self.path, w, point, h5py.Group), None
        g = self._level(f, level, branch)
        point = point or "trained"
        key = {"trained": "weights", "init": "init_weights"}.get(point)
        if key is None:
            raise ConfigError(f"point must be 'trained' or 'init' for a level's weights; got {point!r}")
        weights = child(self.path, g, key, h5py.Group, required=False)
        if weights is None:
            where = f"level {level}" + (f" branch {branch!r}" if branch else "")
            raise TicketFileError(f"{self.path}: {where} has no stored {point} weights")
        return weights, g

    # -- evaluation ----------------------------------------------------------------------------------------

    def evaluation(self, level: int, *, branch: str | None = None) -> Evaluation | None:
        """The test-set :class:`~ticketlab.evaluation.Evaluation` of ``level`` (or a branch); ``None`` if not
        evaluated (e.g. an imported mask)."""
        with self._file() as f, _errors(self.path):
            e = child(self.path, self._level(f, level, branch), "eval", h5py.Group, required=False)
            if e is None or not has_predictions(self.path, e):
                return None  # not evaluated, or only logged metrics (see level_record)
            return read_evaluation(self.path, e, eval_numbers(self.path, e), self._dataset(f))

    def _eval_numbers(self, f: h5py.File, g: h5py.Group) -> dict[str, Any] | None:
        """An ``eval`` group's headline numbers, checked against its predictions when it has them."""
        e = child(self.path, g, "eval", h5py.Group, required=False)
        if e is None:
            return None

        def check() -> dict[str, Any]:
            numbers = eval_numbers(self.path, e)
            if has_predictions(self.path, e):
                read_evaluation(self.path, e, numbers, self._dataset(f))
            return numbers

        return self._once(("eval", e.name), check)

    # -- summaries -----------------------------------------------------------------------------------------

    def level_record(self, level: int, *, branch: str | None = None) -> dict[str, Any]:
        """One level's headline numbers, read without unpacking masks or loading predictions.

        Keys: level, branch, kept, size, density, sparsity, compression (over all masked tensors),
        accuracy, loss, early_stop_iteration, iterations, wall_time (seconds).
        """
        with self._file() as f, _errors(self.path):
            _, kept, size = self._verified(f, level, branch)
            numbers = self._eval_numbers(f, self._level(f, level, branch))
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
            if numbers is not None:
                rec.update(numbers)
            return rec

    def summary(self, *, branches: bool = True) -> "Any":
        """A pandas DataFrame with one row per level (and per branch when ``branches``); see :meth:`level_record`."""
        import pandas as pd

        with self._held():
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

        with self._held():
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
    with TicketFile(path) as t, t._file() as f, _errors(path):
        state = child(path, f, "state", h5py.Group, required=False)
        d = None if state is None else child(path, state, name, h5py.Dataset, required=False)
        return None if d is None else read_json(path, d)

