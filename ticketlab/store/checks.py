"""Checked reading of HDF5 objects: attributes, groups, datasets, strings and JSON, each checked before use.

The primitives every ticket-file reader builds on (:mod:`ticketlab.store.contents` applies them to the objects
of the format). A damaged or hand-edited file gives a one-line :class:`~ticketlab.errors.TicketFileError`
naming the file and the object in it, never a traceback::

    run.h5: root attribute 'schema_version' is inf; expected an integer
    run.h5: levels/3/eval: attribute 'accuracy' is 42.0, outside [0.0, 1.0]
    run.h5: levels/3/masks/fc1.weight: cannot be read; the file is truncated or corrupted (checksum or
    decompression failed)

Attributes are checked for type (an array, raw bytes or text that is not UTF-8 where a string or number is
expected) and range; datasets for kind (group or dataset), shape and dtype before they are read, and for the
size they declare against the bytes they store, so that a damaged header cannot make a reader allocate
terabytes. Data written with HDF5's ``fletcher32`` filter is verified by HDF5 itself on every read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ticketlab.errors import TicketFileError

#: Shapes stored as attributes (a mask's or a weight's ``shape``) have at most this many dimensions.
MAX_NDIM = 32
#: Datasets up to this many bytes are read without comparing their size with the bytes stored.
_SMALL_BYTES = 1 << 24
#: deflate compresses at most ~1032:1; a dataset declaring far more than that over its stored bytes is damaged.
_MAX_RATIO = 1100
_INT_BOUND = 1 << 64  # any 64-bit integer (seeds use the whole range)
_MISSING = object()
_READ_ERRORS = (OSError, KeyError, ValueError, RuntimeError, TypeError, IndexError, ArithmeticError)


# ----------------------------------------------------------------------------------------------------------
# Naming objects and describing values


def where(obj: Any) -> str:
    """The object's path inside the file, as messages show it (``levels/3/masks/fc1.weight``; ``root``)."""
    name = getattr(obj, "name", None)
    return "root" if not name or name == "/" else str(name).lstrip("/")


def fail(path: Path, obj: Any, message: str) -> TicketFileError:
    """The error for a damaged object: ``FILE: OBJECT: message``."""
    return TicketFileError(f"{path}: {where(obj)}: {message}")


def _detail(err: BaseException) -> str:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    if "filter returned failure" in text or "checksum" in text.lower():
        return "checksum or decompression failed"
    return text


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape}"
    if isinstance(value, (bytes, np.bytes_, np.void)):
        return f"raw bytes {bytes(value)[:20]!r}"
    text = repr(value.item() if isinstance(value, np.generic) else value)
    return text if len(text) <= 60 else text[:57] + "..."


def _text(value: Any) -> str | None:
    """``value`` as text if it is a string (or UTF-8 bytes); ``None`` if it is not text at all.
    Raises ValueError for text that is not valid UTF-8 (h5py hands such strings over with surrogates)."""
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8")
    if isinstance(value, str):
        value.encode("utf-8")  # surrogates (undecodable bytes) raise here
        return str(value)
    return None


# ----------------------------------------------------------------------------------------------------------
# Attributes


def attr(path: Path, obj: Any, name: str, kind: str, default: Any = _MISSING, *, lo: float | None = None,
         hi: float | None = None, nan: bool = False, inf: bool = False) -> Any:
    """A validated scalar attribute of ``obj``: ``kind`` is ``"str"``, ``"int"`` or ``"float"``.

    Missing attributes return ``default`` (or are an error without one). Integers must be integral and within
    ``[lo, hi]``; floats finite (unless ``nan`` / ``inf`` allow NaN / +inf) and within ``[lo, hi]``.
    """
    label = f"root attribute {name!r}" if where(obj) == "root" else f"{where(obj)}: attribute {name!r}"

    def bad(message: str) -> TicketFileError:
        return TicketFileError(f"{path}: {label} {message}")

    try:
        if name not in obj.attrs:
            if default is _MISSING:
                raise bad("is missing")
            return default
        value = obj.attrs[name]
    except TicketFileError:
        raise
    except _READ_ERRORS as err:
        raise bad(f"cannot be read; the file is truncated or corrupted ({_detail(err)})") from None
    if isinstance(value, np.ndarray):
        raise bad(f"is {_describe(value)}; expected a single {'string' if kind == 'str' else 'number'}")
    if kind == "str":
        try:
            text = _text(value)
        except ValueError:
            raise bad("is not valid UTF-8 text") from None
        if text is None:
            raise bad(f"is {_describe(value)}; expected a string")
        return text
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise bad(f"is {_describe(value)}; expected {'an integer' if kind == 'int' else 'a number'}")
    if kind == "int":
        if isinstance(value, (float, np.floating)) and not (np.isfinite(value) and float(value).is_integer()):
            raise bad(f"is {_describe(value)}; expected an integer")
        number: float = int(value)
        if abs(number) >= _INT_BOUND:
            raise bad(f"is {number}, which is out of range")
    else:
        number = float(value)
        if np.isnan(number):
            if nan:
                return number
            raise bad("is NaN; expected a number")
        if np.isinf(number) and not (inf and number > 0):
            raise bad(f"is {number}; expected a finite number")
    if (lo is not None and number < lo) or (hi is not None and number > hi):
        span = f"[{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
        raise bad(f"is {_describe(value)}, outside {span}")
    return number


def int_array_attr(path: Path, obj: Any, name: str) -> tuple[int, ...]:
    """A 1-D integer array attribute (e.g. a mask's ``shape``) as a tuple of Python ints."""
    label = f"{where(obj)}: attribute {name!r}"
    try:
        value = obj.attrs[name]
    except _READ_ERRORS as err:
        raise TicketFileError(f"{path}: {label} cannot be read ({_detail(err)})") from None
    value = np.asarray(value)
    if value.ndim != 1 or value.dtype.kind not in "iu" or value.size > MAX_NDIM:
        raise TicketFileError(f"{path}: {label} is {_describe(value)}; expected a shape (a list of integers)")
    return tuple(int(v) for v in value)


def plain(value: Any) -> Any:
    """An attribute value as plain Python data for callers that show attributes they do not interpret."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, str):
        return value.encode("utf-8", errors="replace").decode("utf-8")
    if isinstance(value, np.ndarray):
        return [plain(v) for v in value.reshape(-1)[:1000]] if value.dtype != object else value.tolist()
    return value


# ----------------------------------------------------------------------------------------------------------
# Groups and datasets


def child(path: Path, parent: Any, name: str, kind: type, *, required: bool = True) -> Any:
    """``parent[name]``, checked to be a group (``kind=h5py.Group``) or a dataset (``h5py.Dataset``)."""
    what = "group" if kind is h5py.Group else "dataset"
    try:
        present = name in parent
        obj = parent[name] if present else None
    except _READ_ERRORS as err:
        raise fail(path, parent, f"cannot read its member {name!r}; the file is truncated or corrupted "
                   f"({_detail(err)})") from None
    if obj is None:
        if required:
            raise fail(path, parent, f"has no {name!r} {what}")
        return None
    if not isinstance(obj, kind):
        other = "group" if isinstance(obj, h5py.Group) else "dataset" if isinstance(obj, h5py.Dataset) else "link"
        raise fail(path, obj, f"is a {other}; expected a {what}")
    return obj


def keys(path: Path, group: Any) -> list[str]:
    """Member names of a group, in stored order."""
    try:
        return list(group.keys())
    except _READ_ERRORS as err:
        raise fail(path, group, f"cannot list its members; the file is truncated or corrupted "
                   f"({_detail(err)})") from None


def read(path: Path, d: Any, *, shape: tuple[int, ...] | None = None, ndim: int | None = None,
         kinds: str = "biuf") -> np.ndarray:
    """Read a whole dataset after checking its shape, dtype kind (numpy ``dtype.kind`` letters) and that the
    size it declares is backed by stored bytes (a damaged header cannot make us allocate terabytes)."""
    dshape = d.shape
    if dshape is None:
        raise fail(path, d, "is empty (no dataspace)")
    if shape is not None and tuple(dshape) != tuple(shape):
        raise fail(path, d, f"has shape {tuple(dshape)}; expected {tuple(shape)}")
    if ndim is not None and len(dshape) != ndim:
        raise fail(path, d, f"has {len(dshape)} dimensions; expected {ndim}")
    if d.dtype.kind not in kinds:
        raise fail(path, d, f"has dtype {d.dtype}, which is not what this dataset holds")
    n = 1
    for s in dshape:
        n *= int(s)
    nbytes = n * d.dtype.itemsize
    if nbytes > _SMALL_BYTES:
        try:
            stored = int(d.id.get_storage_size())
        except _READ_ERRORS as err:
            raise fail(path, d, f"cannot be read ({_detail(err)})") from None
        if nbytes > _MAX_RATIO * stored + _SMALL_BYTES:
            raise fail(path, d, f"declares {n:,} elements ({nbytes:,} bytes) but stores only {stored:,} bytes")
    try:
        return d[()]
    except _READ_ERRORS as err:
        raise fail(path, d, f"cannot be read; the file is truncated or corrupted ({_detail(err)})") from None


def read_strings(path: Path, d: Any, n: int | None = None) -> list[str]:
    """A 1-D string dataset (of length ``n``) as a list of str."""
    if h5py.check_string_dtype(d.dtype) is None:
        raise fail(path, d, f"has dtype {d.dtype}; expected strings")
    if d.shape is None or len(d.shape) != 1 or (n is not None and d.shape[0] != n):
        raise fail(path, d, f"has shape {d.shape}; expected ({n if n is not None else 'n'},)")
    raw = read(path, d, kinds="OSU")
    out = []
    for v in raw:
        try:
            text = _text(v)
        except ValueError:
            raise fail(path, d, "holds text that is not valid UTF-8") from None
        if text is None:
            raise fail(path, d, "holds something other than text")
        out.append(text)
    return out


def read_json(path: Path, d: Any) -> dict[str, Any]:
    """A scalar string dataset holding a JSON object (``/config``, ``/state/<name>``)."""
    if h5py.check_string_dtype(d.dtype) is None or d.shape != ():
        raise fail(path, d, f"is a dataset of shape {d.shape} and dtype {d.dtype}; expected a JSON text")
    try:
        text = _text(read(path, d, kinds="OSU"))
        value = json.loads(text) if text is not None else None
    except ValueError as err:
        raise fail(path, d, f"is not valid JSON ({_detail(err)})") from None
    if not isinstance(value, dict):
        raise fail(path, d, "is not a JSON object")
    return value


# ----------------------------------------------------------------------------------------------------------
# HDF5's global heap, checked before HDF5 reads it

#: Files up to this size are scanned for damaged global heaps before HDF5 opens them (about 0.4 ms per MiB).
GLOBAL_HEAP_SCAN_MAX_BYTES = 256 << 20
_SUPERBLOCK = b"\x89HDF\r\n\x1a\n"
_COLLECTION = b"GCOL\x01\x00\x00\x00"  # signature, version 1, three reserved bytes
_scanned: dict[tuple[int, int, int, int], None] = {}


def check_global_heaps(path: Path) -> None:
    """Refuse a file whose HDF5 global heap would make HDF5 loop forever.

    Variable-length data (text attributes, tensor names and shapes, the configuration) lives in global heap
    collections (``GCOL``). HDF5 (2.0 included) parses a collection's object list without checking that it
    advances: a zeroed object header (index 0, size 0) or a size that wraps the pointer makes it loop forever
    inside one C call, which no Python code can interrupt. Such files are refused here, from the raw bytes,
    before HDF5 reads them. Files over :data:`GLOBAL_HEAP_SCAN_MAX_BYTES` are not scanned (the cost is a pass
    over the file); each file is scanned once per process while it is unchanged.
    """
    import mmap

    try:
        st = path.stat()
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if key in _scanned or not 0 < st.st_size <= GLOBAL_HEAP_SCAN_MAX_BYTES:
            return
        with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
            bad = _broken_heap(data)
    except (OSError, ValueError):
        return  # unreadable here: HDF5 reports it
    if bad is not None:
        raise TicketFileError(f"{path}: the HDF5 global heap at byte {bad} is damaged (its object list does not "
                              "advance); the file is truncated or corrupted")
    _scanned[key] = None


def _broken_heap(data: Any) -> int | None:
    """Offset of the first global heap collection HDF5 could not finish parsing, or None."""
    offset = next((o for o in (0, 512, 1024, 2048, 4096) if data[o:o + 8] == _SUPERBLOCK), None)
    if offset is None:
        return None
    version = data[offset + 8]
    lengths = data[offset + 14] if version in (0, 1) else data[offset + 10] if version in (2, 3) else 0
    if lengths not in (2, 4, 8):
        return None
    header, objhdr, end_of_file = 8 + lengths, 8 + lengths, len(data)
    i = data.find(_COLLECTION)
    while i >= 0:
        if i + header <= end_of_file:
            size = int.from_bytes(data[i + 8:i + 8 + lengths], "little")
            end = i + size
            p = i + header
            while end <= end_of_file and p < end and p + objhdr <= end:
                index = int.from_bytes(data[p:p + 2], "little")
                length = int.from_bytes(data[p + 8:p + 8 + lengths], "little")
                need = objhdr + ((length + 7) & ~7) % (1 << 64) if index else length
                if need == 0 or need >= 1 << 63:  # no progress, or a pointer that wraps around
                    return i
                p += need
        i = data.find(_COLLECTION, i + 1)
    return None
