"""The ticket file's format: constants, provenance, version checks, opening and error translation.

Everything here is shared by the reader and the writers: the identifying ``format`` attribute, the schema
version every reader checks, how masks are compressed, the provenance recorded at creation, and the one place
where low-level HDF5 failures become one-line :class:`~ticketlab.errors.TicketFileError` messages naming the
file. The layout itself is documented in ``docs/format.md``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import importlib.metadata
import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import h5py
import numpy as np

from ticketlab._version import __version__
from ticketlab.errors import ConfigError, TicketFileError
from ticketlab.store.checks import _detail, attr, check_global_heaps

#: Version of the on-disk schema written by this ticketlab; readers accept files up to this version.
SCHEMA_VERSION = 1
#: Value of the root ``format`` attribute that identifies a ticket file.
FORMAT = "ticketlab-ticket"
#: The first ticketlab whose files carry HDF5 fletcher32 checksums on masks, weights and evaluations (older files
#: open as before; ``ticketlab info`` says they have none).
CHECKSUMS_SINCE = "0.2.0"
#: Run status values stored in the root ``status`` attribute.
STATUSES = ("in_progress", "complete", "failed")

# Masks are bit-packed (np.packbits over the C-order flattened tensor) and gzip-compressed at level 4 in
# chunks of 256 KiB (2 Mi weights). Measured on 25M-weight random masks (docs/performance.md): level 4 gives
# 0.57 bits/weight at density 0.1 and 0.15 at density 0.01, within a few percent of level 9, and reading is
# dominated by unpacking either way. gzip (deflate) is in every HDF5 build; lzf is not.
_MASK_CHUNK_BYTES = 1 << 18
_GZIP_LEVEL = 4
_STR = h5py.string_dtype()


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


# ----------------------------------------------------------------------------------------------------------
# Provenance and small helpers


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


def _level_key(level: int) -> str:
    return str(int(level))


def _check_new_path(path: Path, overwrite: bool) -> None:
    """Refuse to write a new file over an existing one (unless ``overwrite``), a directory, or into nowhere."""
    if path.is_dir():
        raise TicketFileError(f"{path}: is a directory")
    if path.exists() and not overwrite:
        raise TicketFileError(f"{path}: already exists; choose another path or allow overwriting")
    if not path.parent.exists():
        raise TicketFileError(f"{path}: directory {path.parent} does not exist")


# ----------------------------------------------------------------------------------------------------------
# Errors, opening and validation


@contextlib.contextmanager
def _errors(path: Path, doing: str = "read") -> Iterator[None]:
    """Turn low-level HDF5 failures into one-line :class:`TicketFileError` messages naming the file."""
    try:
        yield
    except (TicketFileError, ConfigError):
        raise
    except (OSError, KeyError, ValueError, RuntimeError, TypeError, IndexError, ArithmeticError) as err:
        detail = _detail(err)
        raise TicketFileError(
            f"{path}: cannot {doing} the ticket file; it is truncated or corrupted ({detail})"
        ) from None


def _check_ticket(f: h5py.File, path: Path) -> int:
    # `in` (H5Aexists) raises on damaged metadata, where attrs.get() would quietly return None
    fmt = f.attrs["format"] if "format" in f.attrs else None
    if isinstance(fmt, (bytes, np.bytes_)):
        fmt = bytes(fmt).decode("utf-8", errors="replace")
    if not isinstance(fmt, str) or fmt != FORMAT:
        raise TicketFileError(
            f"{path}: an HDF5 file, but not a ticket file (no format={FORMAT!r} attribute at its root); "
            "ticket files are written by 'ticketlab train', 'ticketlab import' or the ticketlab.store API"
        )
    version = attr(path, f, "schema_version", "int")
    if version > SCHEMA_VERSION:
        raise TicketFileError(
            f"{path}: written with ticket-file schema version {version}, but ticketlab {__version__} reads "
            f"versions up to {SCHEMA_VERSION}; upgrade ticketlab (pip install -U ticketlab)"
        )
    if version < 1:
        raise TicketFileError(f"{path}: invalid ticket-file schema version {version}")
    return int(version)


def _check_writable(f: h5py.File, path: Path) -> None:
    """A ticket file this ticketlab may append to: a ticket file of exactly the current schema version."""
    version = _check_ticket(f, path)
    if version != SCHEMA_VERSION:
        raise TicketFileError(
            f"{path}: schema version {version} cannot be appended to by ticketlab {__version__} "
            f"(schema {SCHEMA_VERSION}); write a new file"
        )


def _open_h5(path: Path, mode: str, locking: bool | None = None) -> h5py.File:
    if not path.exists():
        raise TicketFileError(f"{path}: no such file")
    if path.is_dir():
        raise TicketFileError(f"{path}: is a directory, not a ticket file; give the ticket files in it (e.g. "
                              f"{path}/*.h5), or a study directory (one holding manifest.json)")
    check_global_heaps(path)
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
