"""The ticket file: one HDF5 file per pruning run. This is the only module that imports h5py.

The schema is documented in ``docs/format.md``; :data:`SCHEMA_VERSION` is written into every file and checked
by every reader. Reading::

    import ticketlab
    with ticketlab.open_ticket("run.h5") as t:
        t.levels                     # [0, 1, 2, ...]
        t.masks(3)                   # {name: bool array}, one dataset read per tensor
        t.mask(3, "fc1.weight")      # one tensor of one level: one dataset read
        t.evaluation(3).per_class_accuracy
        t.summary()                  # one row per level: density, accuracy, early-stop iteration, ...

Writing (used by training, importers and ``intersect``)::

    ticketlab.store.create("run.h5", tensors=..., model="lenet300", dataset=..., method="...", seed=0,
                           config={...}, init_weights=state_dict)
    w = ticketlab.store.TicketWriter("run.h5")
    w.write_level(0, masks, evaluation=ev, weights=trained_state_dict)
    w.set_status("complete")

Crash safety: every write is a transaction. The file is copied to a hidden temporary file beside it, the
temporary file is changed and closed, flushed to disk, and atomically renamed over the original
(``os.replace``). A process killed at any moment therefore leaves either the old file or the new one, never
a half-written level, and the file is never held open for writing between levels. Readers that hold the old
file open keep reading their consistent snapshot.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import importlib.metadata
import json
import os
import platform
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import h5py
import numpy as np

from ticketlab._version import __version__
from ticketlab.errors import ConfigError, TicketFileError
from ticketlab.evaluation import Evaluation
from ticketlab.masks import pack_mask, unpack_mask, TensorInfo, as_bool_mask, check_masks, compression, density, sparsity

#: Version of the on-disk schema written by this ticketlab; readers accept files up to this version.
SCHEMA_VERSION = 1
#: Value of the root ``format`` attribute that identifies a ticket file.
FORMAT = "ticketlab-ticket"
#: Run status values stored in the root ``status`` attribute.
STATUSES = ("in_progress", "complete", "failed")

# Masks are bit-packed (np.packbits over the C-order flattened tensor) and gzip-compressed at level 4 in
# chunks of 256 KiB (2 Mi weights). Measured on 25M-weight random masks (docs/performance.md): level 4 gives
# 0.57 bits/weight at density 0.1 and 0.15 at density 0.01, within a few percent of level 9, and reading is
# dominated by unpacking either way. gzip (deflate) is in every HDF5 build; lzf is not.
_MASK_CHUNK_BYTES = 1 << 18
_GZIP_LEVEL = 4
_STR = h5py.string_dtype()


# ----------------------------------------------------------------------------------------------------------
# Small helpers


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _versions() -> dict[str, str]:
    def dist(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    return {
        "ticketlab_version": __version__,
        "torch_version": dist("torch"),
        "numpy_version": np.__version__,
        "h5py_version": h5py.__version__,
        "hdf5_version": h5py.version.hdf5_version,
        "python_version": platform.python_version(),
    }


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (Path, set, tuple)):
        return str(obj) if isinstance(obj, Path) else list(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


def _to_json(value: Any, what: str) -> str:
    try:
        return json.dumps(value, default=_json_default, allow_nan=True)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{what} must be JSON-serialisable: {err}") from None


def _as_array(name: str, value: Any) -> tuple[np.ndarray, str | None]:
    """Convert a numpy array or torch tensor to numpy; returns (array, original torch dtype or None).

    bfloat16 has no numpy equivalent: it is stored as float32 (exactly representable) and the original dtype is
    recorded so it can be restored.
    """
    torch_dtype = None
    if hasattr(value, "detach") and hasattr(value, "dtype"):  # a torch tensor, without importing torch here
        torch_dtype = str(value.dtype).replace("torch.", "")
        value = value.detach().cpu()
        if torch_dtype == "bfloat16":
            value = value.float()
        value = value.numpy()
    arr = np.asarray(value)
    if arr.dtype == object:
        raise ConfigError(f"weight {name!r} is not a numeric array")
    return arr, torch_dtype


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform lets a directory be opened
        _fsync(path)


def _level_key(level: int) -> str:
    return str(int(level))


@contextlib.contextmanager
def _errors(path: Path, doing: str = "read") -> Iterator[None]:
    """Turn low-level HDF5 failures into one-line :class:`TicketFileError` messages naming the file."""
    try:
        yield
    except (TicketFileError, ConfigError):
        raise
    except (OSError, KeyError, ValueError, RuntimeError, TypeError) as err:
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise TicketFileError(
            f"{path}: cannot {doing} the ticket file; it is truncated or corrupted ({detail})"
        ) from None


# ----------------------------------------------------------------------------------------------------------
# Opening and validation


def _check_ticket(f: h5py.File, path: Path) -> int:
    # `in` (H5Aexists) raises on damaged metadata, where attrs.get() would quietly return None
    fmt = f.attrs["format"] if "format" in f.attrs else None
    if isinstance(fmt, bytes):
        fmt = fmt.decode()
    if fmt != FORMAT:
        raise TicketFileError(
            f"{path}: an HDF5 file, but not a ticket file (no format={FORMAT!r} attribute at its root); "
            "ticket files are written by 'ticketlab train', 'ticketlab import' or the ticketlab.store API"
        )
    version = int(f.attrs["schema_version"]) if "schema_version" in f.attrs else -1
    if version > SCHEMA_VERSION:
        raise TicketFileError(
            f"{path}: written with ticket-file schema version {version}, but ticketlab {__version__} reads "
            f"versions up to {SCHEMA_VERSION}; upgrade ticketlab (pip install -U ticketlab)"
        )
    if version < 1:
        raise TicketFileError(f"{path}: invalid ticket-file schema version {version}")
    return version


def _open_h5(path: Path, mode: str, locking: bool | None = None) -> h5py.File:
    if not path.exists():
        raise TicketFileError(f"{path}: no such file")
    if path.is_dir():
        raise TicketFileError(f"{path}: is a directory, not a ticket file")
    kwargs = {} if locking is None else {"locking": locking}
    try:
        f = h5py.File(path, mode, **kwargs)
    except OSError as err:
        # classify only on failure, so that a good file is opened once
        try:
            is_hdf5 = h5py.is_hdf5(str(path))
        except OSError:
            is_hdf5 = True
        if not is_hdf5:
            raise TicketFileError(f"{path}: not an HDF5 file, so not a ticket file") from None
        with _errors(path, "open"):
            raise err
    try:
        with _errors(path, "open"):
            _check_ticket(f, path)
    except BaseException:
        f.close()
        raise
    return f


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


# ----------------------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class DatasetInfo:
    """The dataset a run was evaluated on.

    Attributes
    ----------
    name : str
        Registry name, e.g. ``"mnist"``.
    num_classes : int
    class_names : list of str
        One per class, in label order.
    test_labels : ndarray of shape (N,), int64 or None
        True label of every test example, in the order of the stored predictions.
    """

    name: str
    num_classes: int
    class_names: tuple[str, ...] = ()
    test_labels: np.ndarray | None = None


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


# ----------------------------------------------------------------------------------------------------------
# Writing


def _create_group(parent: h5py.Group, name: str) -> h5py.Group:
    return parent.create_group(name, track_order=True)


def _write_string(parent: h5py.Group, name: str, text: str) -> None:
    parent.create_dataset(name, data=text, dtype=_STR)


def _gzip(n: int) -> dict[str, Any]:
    """Dataset options: gzip for arrays big enough to gain from it (HDF5 needs chunks for filters)."""
    return {"compression": "gzip", "compression_opts": _GZIP_LEVEL} if n >= 1024 else {}


def _write_weights(group: h5py.Group, weights: Mapping[str, Any], masks: Mapping[str, np.ndarray] | None = None
                   ) -> None:
    """Write a state dict. Tensors with a mask in ``masks`` are stored as their kept values only."""
    for name, value in weights.items():
        if "/" in name:
            raise ConfigError(f"weight name {name!r} contains '/', which HDF5 would read as a sub-group")
        arr, torch_dtype = _as_array(name, value)
        m = None if masks is None else masks.get(name)
        if m is not None and arr.shape == m.shape and arr.size:
            values = arr[m]
            d = group.create_dataset(name, data=values, **_gzip(values.size))
            d.attrs["layout"] = "kept_values"
            d.attrs["shape"] = np.asarray(arr.shape, dtype=np.int64)
        else:
            d = group.create_dataset(name, data=arr, **_gzip(arr.size))
        if torch_dtype is not None:
            d.attrs["torch_dtype"] = torch_dtype


def _compressible(packed: np.ndarray) -> bool:
    """Whether gzip shrinks a packed mask, judged by a fast trial on its first chunk.

    Masks near density 0.5 with no structure are incompressible, and gzip would add a few bytes per chunk;
    those are stored raw, so storage never exceeds 1 bit per weight (plus HDF5's per-dataset header).
    """
    if packed.size < 64:
        return False
    sample = packed[:_MASK_CHUNK_BYTES].tobytes()
    return len(zlib.compress(sample, 1)) < 0.97 * len(sample)


class LevelWriter:
    """Receives one level's (or branch's) masks, weights and evaluation, one tensor at a time.

    Obtained from :meth:`TicketWriter.level_writer`; everything given is written in that call's transaction,
    which commits when the ``with`` block ends and every tensor of the table has exactly one mask. Only one
    tensor needs to be in memory at a time, so levels of models far larger than memory can be written (e.g. by
    ``ticketlab import checkpoint``).
    """

    def __init__(self, group: h5py.Group, root: h5py.File, tensors: list[TensorInfo], num_classes: int | None,
                 n_test: int | None) -> None:
        self._group, self._root, self._tensors = group, root, tensors
        self._index = {t.name: i for i, t in enumerate(tensors)}
        self._masks = _create_group(group, "masks")
        self._weights: h5py.Group | None = None
        self._kept = np.full(len(tensors), -1, dtype=np.int64)
        self._num_classes, self._n_test = num_classes, n_test

    def add_mask(self, name: str, mask: Any = None, *, packed: np.ndarray | None = None,
                 kept: int | None = None) -> None:
        """Add tensor ``name``'s mask: a 0/1 or boolean array of its shape, or ``packed`` as :func:`pack_mask`
        makes it (``ceil(size / 8)`` bytes, padding bits 0). ``kept`` is counted when not given."""
        i = self._index.get(name)
        if i is None:
            raise ConfigError(f"mask names a tensor the file's table does not have: {name!r}")
        if self._kept[i] >= 0:
            raise ConfigError(f"two masks given for tensor {name!r}")
        t = self._tensors[i]
        if (mask is None) == (packed is None):
            raise ConfigError(f"give the mask of {name!r} either as an array or packed, not both or neither")
        if mask is not None:
            mask = as_bool_mask(name, mask, t.shape)
            packed = pack_mask(mask)
            kept = int(np.count_nonzero(mask)) if kept is None else kept
        packed = np.ascontiguousarray(packed, dtype=np.uint8).reshape(-1)
        if packed.size != (t.size + 7) // 8:
            raise ConfigError(f"packed mask for {name!r} has {packed.size} bytes, expected {(t.size + 7) // 8}")
        if kept is None:
            kept = int(np.unpackbits(packed, count=t.size).sum()) if t.size else 0
        if not 0 <= int(kept) <= t.size:
            raise ConfigError(f"kept count {kept} of {name!r} is outside [0, {t.size}]")
        kw: dict[str, Any] = {}
        if _compressible(packed):
            kw = dict(chunks=(min(packed.size, _MASK_CHUNK_BYTES),), compression="gzip",
                      compression_opts=_GZIP_LEVEL)
        d = self._masks.create_dataset(name, data=packed, **kw)
        d.attrs["shape"] = np.asarray(t.shape, dtype=np.int64)
        self._kept[i] = int(kept)

    def add_weight(self, key: str, value: Any, *, mask: np.ndarray | None = None,
                   torch_dtype: str | None = None) -> None:
        """Add one trained weight (numpy array or torch tensor). With ``mask`` (boolean, the tensor's mask) only
        its kept values are stored (``layout="kept_values"``). ``torch_dtype`` records the dtype the values had
        before conversion to numpy (e.g. ``"bfloat16"``; torch tensors record theirs themselves)."""
        if self._weights is None:
            self._weights = _create_group(self._group, "weights")
        _write_weights(self._weights, {key: value}, None if mask is None else {key: mask})
        if torch_dtype is not None:
            self._weights[key].attrs["torch_dtype"] = str(torch_dtype)

    def add_weights(self, weights: Mapping[str, Any], masks: Mapping[str, np.ndarray] | None = None) -> None:
        """Add a state dict; tensors with a mask in ``masks`` are stored as their kept values."""
        for key, value in weights.items():
            self.add_weight(key, value, mask=None if masks is None else masks.get(key))

    def add_init_weights(self, weights: Mapping[str, Any], masks: Mapping[str, np.ndarray] | None = None) -> None:
        """A branch's initial weights (``init_weights/``), masked tensors as kept values."""
        _write_weights(_create_group(self._group, "init_weights"), weights, masks)

    def set_evaluation(self, evaluation: Evaluation) -> None:
        """The trained network's test-set evaluation."""
        _write_evaluation(self._group, evaluation, self._num_classes, self._n_test)

    def set_logged_metrics(self, *, accuracy: float, loss: float = float("nan"),
                           curve: Mapping[str, np.ndarray] | None = None, early_stop_iteration: int | None = None,
                           iterations: int = 0, wall_time: float = 0.0) -> None:
        """Test metrics known only as logged numbers (e.g. an imported OpenLTH run): accuracy (fraction), loss
        (nats) and curve, without predictions. :meth:`TicketFile.evaluation` returns ``None`` for such a level;
        summaries and ``ticketlab info`` show the numbers."""
        _write_eval_group(self._group, accuracy, loss, early_stop_iteration, iterations, wall_time, curve or {})

    def set_pruned(self, flags: Mapping[str, bool]) -> None:
        """Update the ``pruned`` flags of the file's tensor table (e.g. when an importer learns them while
        streaming), in this transaction."""
        unknown = [n for n in flags if n not in self._index]
        if unknown:
            raise ConfigError(f"no tensor {unknown[0]!r} in the file's table")
        pruned = self._root["model"]["pruned"]
        values = pruned[()]
        for name, flag in flags.items():
            values[self._index[name]] = 1 if flag else 0
        pruned[...] = values

    def _finish(self) -> None:
        missing = [t.name for t, k in zip(self._tensors, self._kept) if k < 0]
        if missing:
            raise ConfigError(f"no mask given for tensor {missing[0]!r} (missing: {', '.join(missing[:5])}"
                              + (", ..." if len(missing) > 5 else "") + ")")
        self._group.create_dataset("kept", data=self._kept)
        size = sum(t.size for t in self._tensors)
        kept = int(self._kept.sum())
        self._group.attrs.update({"kept": kept, "size": int(size), "density": density(kept, size)})


def _write_eval_group(group: h5py.Group, accuracy: float, loss: float, early_stop_iteration: int | None,
                      iterations: int, wall_time: float, curve: Mapping[str, np.ndarray]) -> h5py.Group:
    """The ``eval`` group's headline attributes and training curve (shared by full and logged evaluations)."""
    e = _create_group(group, "eval")
    e.attrs["accuracy"] = float(accuracy)
    e.attrs["loss"] = float(loss)
    e.attrs["early_stop_iteration"] = -1 if early_stop_iteration is None else int(early_stop_iteration)
    e.attrs["iterations"] = int(iterations)
    e.attrs["wall_time"] = float(wall_time)
    c = _create_group(e, "curve")
    lengths = {np.asarray(v).shape for v in curve.values()}
    if len(lengths) > 1 or any(len(x) != 1 for x in lengths):
        raise ConfigError(f"training-curve columns must be 1-D of equal length; got {sorted(lengths)}")
    for name, column in curve.items():
        c.create_dataset(str(name), data=np.asarray(column))
    return e


def _write_evaluation(group: h5py.Group, ev: Evaluation, num_classes: int | None, n_test: int | None) -> None:
    if num_classes is not None and ev.num_classes != num_classes:
        raise ConfigError(f"evaluation has {ev.num_classes} classes but the file's dataset has {num_classes}")
    if n_test is not None and ev.predictions.size != n_test:
        raise ConfigError(f"evaluation has {ev.predictions.size} predictions but the test set has {n_test} examples")
    e = _write_eval_group(group, ev.accuracy, ev.loss, ev.early_stop_iteration, ev.iterations, ev.wall_time,
                          ev.curve)
    e.create_dataset("per_class_accuracy", data=ev.per_class_accuracy.astype(np.float64))
    e.create_dataset("confusion", data=ev.confusion)
    pred_dtype = np.int16 if ev.num_classes <= np.iinfo(np.int16).max else np.int32
    preds = ev.predictions.astype(pred_dtype)
    e.create_dataset("predictions", data=preds, **_gzip(preds.size))


def create(
    path: str | os.PathLike,
    *,
    tensors: Iterable[TensorInfo],
    model: str,
    method: str,
    config: Mapping[str, Any],
    seed: int | None = None,
    dataset: DatasetInfo | None = None,
    init_weights: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Create a new ticket file with status ``"in_progress"`` and no levels.

    Parameters
    ----------
    path : path-like
        Where to write; an existing file is refused unless ``overwrite``.
    tensors : iterable of TensorInfo
        The masked tensors in model order.
    model, method : str
        Model name and a short description of how masks are made (shown by ``ticketlab info``).
    config : mapping
        The full run configuration; must be JSON-serialisable. Stored as JSON in ``/config``.
    seed : int, optional
        The run's seed (``None`` for imports whose seed is unknown).
    dataset : DatasetInfo, optional
        Dataset name, classes and test labels (needed by per-example analyses).
    init_weights : mapping, optional
        The initial weights: every parameter and buffer of the model (a state dict).
    overwrite : bool
        Replace an existing file.
    """
    path = Path(path)
    tensors = list(tensors)
    if not tensors:
        raise ConfigError("a ticket file needs at least one masked tensor")
    names = [t.name for t in tensors]
    if len(set(names)) != len(names):
        raise ConfigError(f"tensor names must be unique; got {names}")
    if path.exists() and not overwrite:
        raise TicketFileError(f"{path}: already exists; choose another path or allow overwriting")
    if path.is_dir():
        raise TicketFileError(f"{path}: is a directory")
    if not path.parent.exists():
        raise TicketFileError(f"{path}: directory {path.parent} does not exist")
    config_json = _to_json(dict(config), "config")
    tmp = _temp_name(path)
    try:
        with h5py.File(tmp, "w", track_order=True) as f:
            now = _now()
            f.attrs.update({"format": FORMAT, "schema_version": SCHEMA_VERSION, "status": "in_progress",
                            "created": now, "updated": now, "model": str(model), "method": str(method),
                            "seed": -1 if seed is None else int(seed)})
            f.attrs.update(_versions())
            _write_string(f, "config", config_json)
            g = _create_group(f, "model")
            g.attrs["name"] = str(model)
            g.create_dataset("names", data=names, dtype=_STR)
            g.create_dataset("kinds", data=[t.kind for t in tensors], dtype=_STR)
            shapes = g.create_dataset("shapes", (len(tensors),), dtype=h5py.vlen_dtype(np.int64))
            for i, t in enumerate(tensors):
                shapes[i] = np.asarray(t.shape, dtype=np.int64)
            g.create_dataset("pruned", data=np.array([t.pruned for t in tensors], dtype=np.uint8))
            if dataset is not None:
                d = _create_group(f, "dataset")
                d.attrs["name"] = dataset.name
                d.attrs["num_classes"] = int(dataset.num_classes)
                if dataset.class_names:
                    if len(dataset.class_names) != dataset.num_classes:
                        raise ConfigError(f"{len(dataset.class_names)} class names for {dataset.num_classes} classes")
                    d.create_dataset("class_names", data=list(dataset.class_names), dtype=_STR)
                if dataset.test_labels is not None:
                    labels = np.asarray(dataset.test_labels, dtype=np.int64)
                    d.create_dataset("test_labels", data=labels.astype(np.int32), **_gzip(labels.size))
            w = _create_group(f, "weights")
            if init_weights is not None:
                init = _create_group(w, "init")
                init.attrs["iteration"] = 0
                _write_weights(init, init_weights)
            _create_group(f, "levels")
        _commit(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _commit(tmp: Path, path: Path) -> None:
    _fsync(tmp)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _remove_stale_temps(path: Path) -> None:
    """Delete temporary files left beside ``path`` by writers that were killed (their pid no longer runs)."""
    for tmp in path.parent.glob(f".{path.name}.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except PermissionError:
            pass


class TicketWriter:
    """Adds to an existing ticket file, one atomic transaction per call (see the module docstring).

    Only one process may write a given file at a time; the file is not held open between calls.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        with TicketFile(self.path) as t:  # validates: exists, is a ticket file of a readable version
            self._tensors = t.tensors
            ds = t.dataset
        self._num_classes = ds.num_classes if ds else None
        self._n_test = None if ds is None or ds.test_labels is None else int(ds.test_labels.size)

    @property
    def tensors(self) -> list[TensorInfo]:
        return list(self._tensors)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[h5py.File]:
        """Copy the file, yield the copy open for writing, then atomically replace the original with it.

        If the block raises (or the process dies), the original file is untouched.
        """
        _remove_stale_temps(self.path)
        tmp = _temp_name(self.path)
        try:
            shutil.copyfile(self.path, tmp)
            with h5py.File(tmp, "r+") as f:
                _check_ticket(f, self.path)
                if int(f.attrs["schema_version"]) != SCHEMA_VERSION:
                    raise TicketFileError(
                        f"{self.path}: schema version {int(f.attrs['schema_version'])} cannot be appended to by "
                        f"ticketlab {__version__} (schema {SCHEMA_VERSION}); write a new file"
                    )
                yield f
                f.attrs["updated"] = _now()
            _commit(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _level_group(self, f: h5py.File, level: int, branch: str | None, overwrite: bool) -> h5py.Group:
        levels = f["levels"]
        key = _level_key(level)
        if branch is None:
            if int(level) < 0:
                raise ConfigError(f"level must be >= 0; got {level}")
            if key in levels:
                if not overwrite:
                    raise TicketFileError(f"{self.path}: level {level} already exists")
                del levels[key]
            g = _create_group(levels, key)
            g.attrs["level"] = int(level)
            return g
        if key not in levels:
            raise TicketFileError(f"{self.path}: no level {level} to add branch {branch!r} to; write the level first")
        if not branch or "/" in branch:
            raise ConfigError(f"branch name must be non-empty without '/'; got {branch!r}")
        branches = levels[key].require_group("branches")
        if branch in branches:
            if not overwrite:
                raise TicketFileError(f"{self.path}: level {level} already has a branch {branch!r}")
            del branches[branch]
        return _create_group(branches, branch)

    @contextlib.contextmanager
    def level_writer(self, level: int, *, branch: str | None = None, attrs: Mapping[str, Any] | None = None,
                     overwrite: bool = False) -> Iterator[LevelWriter]:
        """Write level ``level`` (or a branch of it) one tensor at a time, in one atomic transaction.

        ::

            with writer.level_writer(3, attrs={"rate": 0.2}) as lw:
                for name, mask in ...:            # any order
                    lw.add_mask(name, mask)       # or packed=..., kept=...
                lw.set_evaluation(ev)

        The level is committed when the block ends, and only if every tensor got a mask; on an error the file is
        left as it was.
        """
        with self.transaction() as f:
            g = self._level_group(f, level, branch, overwrite)
            g.attrs["created"] = _now()
            for k, v in (attrs or {}).items():
                g.attrs[k] = v
            lw = LevelWriter(g, f, self._tensors, self._num_classes, self._n_test)
            yield lw
            lw._finish()

    def write_level(
        self,
        level: int,
        masks: Mapping[str, Any],
        *,
        evaluation: Evaluation | None = None,
        weights: Mapping[str, Any] | None = None,
        attrs: Mapping[str, Any] | None = None,
        overwrite: bool = False,
    ) -> None:
        """Write one complete level atomically.

        Parameters
        ----------
        level : int
            0 for the dense network, L after L pruning steps.
        masks : mapping of str to array
            A mask for every tensor of the file's tensor table (0/1 or bool arrays of the tensor's shape).
        evaluation : Evaluation, optional
            The trained network's test-set evaluation.
        weights : mapping, optional
            The trained weights (a state dict). Masked tensors are stored as their kept values only.
        attrs : mapping, optional
            Extra scalar attributes for the level group (e.g. ``{"rate": 0.2}``).
        overwrite : bool
            Replace the level if it exists.
        """
        self._write(level, None, check_masks(masks, self._tensors), evaluation, weights, None, attrs, overwrite)

    def write_branch(
        self,
        level: int,
        name: str,
        masks: Mapping[str, Any],
        *,
        kind: str,
        evaluation: Evaluation | None = None,
        init_weights: Mapping[str, Any] | None = None,
        weights: Mapping[str, Any] | None = None,
        seed: int | None = None,
        description: str = "",
        attrs: Mapping[str, Any] | None = None,
        overwrite: bool = False,
    ) -> None:
        """Write a control branch of ``level`` atomically: its own mask, initial weights and evaluation.

        ``kind`` names the control (e.g. ``"reinit"``, ``"shuffle"``, ``"random"``).
        """
        attrs = {"kind": str(kind), "seed": -1 if seed is None else int(seed), "description": str(description),
                 **(attrs or {})}
        self._write(level, name, check_masks(masks, self._tensors), evaluation, weights, init_weights, attrs,
                    overwrite)

    def _write(self, level: int, branch: str | None, masks: dict[str, np.ndarray], evaluation: Evaluation | None,
               weights: Mapping[str, Any] | None, init_weights: Mapping[str, Any] | None,
               attrs: Mapping[str, Any] | None, overwrite: bool) -> None:
        with self.level_writer(level, branch=branch, attrs=attrs, overwrite=overwrite) as lw:
            for name, m in masks.items():
                lw.add_mask(name, m)
            if weights is not None:
                lw.add_weights(weights, masks)
            if init_weights is not None:
                lw.add_init_weights(init_weights, masks)
            if evaluation is not None:
                lw.set_evaluation(evaluation)

    def write_checkpoint(self, point: str, weights: Mapping[str, Any], *, iteration: int | None = None,
                         overwrite: bool = False) -> None:
        """Write a run-wide weight checkpoint, e.g. ``"rewind"`` (the weights at iteration K) or ``"init"``."""
        if point not in ("init", "rewind"):
            raise ConfigError(f"checkpoint must be 'init' or 'rewind'; got {point!r}")
        with self.transaction() as f:
            w = f.require_group("weights")
            if point in w:
                if not overwrite:
                    raise TicketFileError(f"{self.path}: already has {point!r} weights")
                del w[point]
            g = _create_group(w, point)
            g.attrs["iteration"] = -1 if iteration is None else int(iteration)
            _write_weights(g, weights)

    def write_config(self, config: Mapping[str, Any]) -> None:
        """Replace the run configuration (``/config``), e.g. when a resumed run is extended by more levels."""
        text = _to_json(dict(config), "config")
        with self.transaction() as f:
            del f["config"]
            _write_string(f, "config", text)

    def write_state(self, name: str, state: Mapping[str, Any]) -> None:
        """Store (replacing) a JSON document under ``/state/<name>``, e.g. what a resumed run needs."""
        text = _to_json(dict(state), f"state {name!r}")
        with self.transaction() as f:
            s = f.require_group("state")
            if name in s:
                del s[name]
            _write_string(s, name, text)

    def set_status(self, status: str) -> None:
        """Mark the run ``"in_progress"``, ``"complete"`` or ``"failed"``."""
        if status not in STATUSES:
            raise ConfigError(f"status must be one of {', '.join(STATUSES)}; got {status!r}")
        with self.transaction() as f:
            f.attrs["status"] = status


def read_state(path: str | os.PathLike, name: str) -> dict[str, Any] | None:
    """The JSON document stored by :meth:`TicketWriter.write_state`, or ``None``."""
    path = Path(path)
    with TicketFile(path)._file() as f, _errors(path):
        if "state" not in f or name not in f["state"]:
            return None
        return json.loads(f["state"][name].asstr()[()])


def copy_ticket(src: str | os.PathLike, dst: str | os.PathLike, *, level_weights: bool = True,
                checkpoints: Iterable[str] | None = None, overwrite: bool = False) -> Path:
    """Copy a ticket file, optionally leaving out weights, into a new compact file (written atomically).

    Parameters
    ----------
    src, dst : path-like
        Source ticket file and destination.
    level_weights : bool
        Keep the trained weights of levels and branches (``weights/`` and ``init_weights/`` groups). Without
        them the copy holds masks, evaluations, provenance and the run-wide checkpoints: enough for every
        analysis, not for ``--resume``.
    checkpoints : iterable of str, optional
        Run-wide checkpoints to keep (``"init"``, ``"rewind"``); default: all.
    overwrite : bool
        Replace ``dst`` if it exists.

    HDF5 never shrinks a file when data is deleted; copying object by object into a new file is how a ticket
    file is made smaller.
    """
    src, dst = Path(src), Path(dst)
    if dst.exists() and not overwrite:
        raise TicketFileError(f"{dst}: already exists; choose another path or allow overwriting")
    keep = None if checkpoints is None else set(checkpoints)
    tmp = _temp_name(dst)
    try:
        with _open_h5(src, "r") as fin, h5py.File(tmp, "w", track_order=True) as fout, _errors(src):
            fout.attrs.update(dict(fin.attrs))
            for name, obj in fin.items():
                if name == "weights":
                    w = _create_group(fout, "weights")
                    for point, g in obj.items():
                        if keep is None or point in keep:
                            fin.copy(g, w, name=point)
                elif name == "levels":
                    levels = _create_group(fout, "levels")
                    for key, g in obj.items():
                        _copy_level(fin, g, levels, key, level_weights)
                else:
                    fin.copy(obj, fout, name=name)
            fout.attrs["updated"] = _now()
        _commit(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dst


def _copy_level(fin: h5py.File, g: h5py.Group, parent: h5py.Group, key: str, weights: bool) -> None:
    out = _create_group(parent, key)
    out.attrs.update(dict(g.attrs))
    for name, obj in g.items():
        if name in ("weights", "init_weights") and not weights:
            continue
        if name == "branches":
            branches = _create_group(out, "branches")
            for b, bg in obj.items():
                _copy_level(fin, bg, branches, b, weights)
        else:
            fin.copy(obj, out, name=name)
