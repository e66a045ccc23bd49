"""The header of a safetensors file, checked in full before a byte of tensor data is read.

Layout: an 8-byte little-endian header length ``n``, ``n`` bytes of UTF-8 JSON
``{name: {"dtype": "BF16", "shape": [...], "data_offsets": [begin, end]}, "__metadata__": {str: str}}``, then
the data section; tensor ``name`` occupies bytes ``[8 + n + begin, 8 + n + end)``.

What :func:`read_header` refuses (each a one-line :class:`~ticketlab.errors.TicketFileError`), whatever the
file claims:

- a header length over :data:`MAX_HEADER_BYTES` (the safetensors library's limit) or past the end of the file;
- a header that is not UTF-8 JSON, nests deeper than :data:`MAX_DEPTH` (checked before parsing, so
  ``[[[[...`` cannot exhaust the stack), repeats a key, or is not an object;
- ``__metadata__`` that is not an object of strings;
- an entry that is not an object with ``dtype`` (a name of capital letters, digits and ``_``), ``shape`` (a list
  of at most :data:`MAX_RANK` integers in ``[0, 2**63)``: no floats, booleans or negatives) and
  ``data_offsets`` (two integers ``0 <= begin <= end <=`` the size of the data section);
- a shape whose size times the dtype's width differs from ``end - begin`` — computed with Python integers, so
  ``[2**61 + 1, 8]`` or ``[2**32, 2**32]`` cannot wrap around to a small or zero size as an int64 product does —
  or whose nonzero dimensions times the width exceed ``2**63 - 1`` (``[0, 2**62]``: empty, yet no array can
  have that shape);
- two tensors whose byte ranges overlap.

Tensors of a well-formed but unknown dtype (e.g. 4-bit formats) are listed as skipped; their byte ranges are
still checked.
"""

from __future__ import annotations

import math
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ticketlab.errors import TicketFileError
from ticketlab.io.safe_json import UntrustedJSONError, load_json, short_repr

__all__ = ["SAFETENSORS_DTYPES", "MAX_HEADER_BYTES", "MAX_DEPTH", "MAX_RANK", "HeaderEntry", "Header", "read_header",
           "corrupted"]

# safetensors dtype → (torch dtype name, raw numpy dtype, is floating)
SAFETENSORS_DTYPES: dict[str, tuple[str, str, bool]] = {
    "F64": ("float64", "<u8", True),
    "F32": ("float32", "<u4", True),
    "F16": ("float16", "<u2", True),
    "BF16": ("bfloat16", "<u2", True),
    "F8_E4M3": ("float8_e4m3fn", "u1", True),
    "F8_E5M2": ("float8_e5m2", "u1", True),
    "I64": ("int64", "<i8", False),
    "I32": ("int32", "<i4", False),
    "I16": ("int16", "<i2", False),
    "I8": ("int8", "i1", False),
    "U64": ("uint64", "<u8", False),
    "U32": ("uint32", "<u4", False),
    "U16": ("uint16", "<u2", False),
    "U8": ("uint8", "u1", False),
    "BOOL": ("bool", "u1", False),
}
#: The safetensors library's own limit on the header length.
MAX_HEADER_BYTES = 100 * 1024 * 1024
#: Deepest nesting allowed in a header: a real one nests 3 (object → entry → shape list).
MAX_DEPTH = 8
#: Most dimensions a tensor may have.
MAX_RANK = 64
#: Dimensions must fit an int64, as torch's and numpy's do.
MAX_DIM = 2**63 - 1
_DTYPE_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,31}")


@dataclass(frozen=True)
class HeaderEntry:
    """One tensor of the header, validated: safetensors dtype code, shape, byte range within the data section."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


@dataclass
class Header:
    """A validated header: ``base`` is the file offset of the data section; ``entries`` the tensors of known
    dtypes in header order; ``skipped`` maps the others to their dtype; ``metadata`` is ``__metadata__``."""

    base: int
    entries: list[HeaderEntry] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)


def corrupted(path: str | os.PathLike, why: str) -> TicketFileError:
    """The error for a file that is not a valid safetensors file."""
    return TicketFileError(f"{path}: not a valid safetensors file; it is truncated or corrupted ({why})")


def _is_int(x: Any) -> bool:
    return type(x) is int  # bool is an int subclass; JSON floats such as 2.0 are not dimensions


def _entry(path: Path, name: str, info: Any, base: int, file_size: int) -> tuple[HeaderEntry, bool]:
    """Validate one entry; returns it and whether its dtype is known."""
    shown = short_repr(name)
    if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= info.keys():
        raise corrupted(path, f"entry {shown} is not an object with dtype, shape and data_offsets")
    st_dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if not isinstance(st_dtype, str) or not _DTYPE_NAME.fullmatch(st_dtype):
        raise corrupted(path, f"entry {shown} has dtype {short_repr(st_dtype)}, which is not a dtype name")
    if not isinstance(shape, list) or len(shape) > MAX_RANK:
        raise corrupted(path, f"entry {shown}: shape is not a list of at most {MAX_RANK} dimensions")
    if not all(_is_int(s) and 0 <= s <= MAX_DIM for s in shape):
        bad = next(s for s in shape if not (_is_int(s) and 0 <= s <= MAX_DIM))
        raise corrupted(path, f"entry {shown}: dimension {short_repr(bad)} of its shape is not an integer in "
                              "[0, 2**63)")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_int(x) for x in offsets):
        raise corrupted(path, f"entry {shown}: data_offsets is not a pair of integers")
    begin, end = offsets
    if not 0 <= begin <= end:
        raise corrupted(path, f"tensor {shown}: data_offsets [{begin}, {end}] are not an ordered pair of byte offsets")
    if end > file_size - base:
        raise corrupted(path, f"tensor {shown} ends at byte {base + end} but the file has {file_size} bytes")
    entry = HeaderEntry(name, st_dtype, tuple(shape), begin, end)
    if st_dtype not in SAFETENSORS_DTYPES:
        return entry, False
    width = np.dtype(SAFETENSORS_DTYPES[st_dtype][1]).itemsize
    nbytes = math.prod(shape) * width  # Python integers: no wrap-around
    if nbytes != end - begin:
        raise corrupted(path, f"tensor {shown}: offsets [{begin}, {end}) do not match shape "
                              f"{short_repr(list(shape), 80)} of {st_dtype} ({nbytes} bytes)")
    if math.prod(s for s in shape if s) * width > MAX_DIM:  # an empty array too must be addressable
        raise corrupted(path, f"tensor {shown}: shape {short_repr(list(shape), 80)} is too large for any array")
    return entry, True


def _check_disjoint(path: Path, entries: list[HeaderEntry]) -> None:
    last: HeaderEntry | None = None
    for e in sorted((e for e in entries if e.end > e.begin), key=lambda e: (e.begin, e.end)):
        if last is not None and e.begin < last.end:
            raise corrupted(path, f"tensors {short_repr(last.name)} and {short_repr(e.name)} share bytes "
                                  f"[{e.begin}, {min(e.end, last.end)})")
        if last is None or e.end > last.end:
            last = e


def read_header(f: BinaryIO, path: str | os.PathLike) -> Header:
    """Read and validate the header of the safetensors file open as ``f`` (see the module docstring)."""
    path = Path(path)
    file_size = os.fstat(f.fileno()).st_size
    f.seek(0)
    head = f.read(8)
    if len(head) < 8:
        raise corrupted(path, "shorter than its 8-byte header length")
    (n,) = struct.unpack("<Q", head)
    if n > MAX_HEADER_BYTES:
        raise corrupted(path, f"header length {n} exceeds the limit of {MAX_HEADER_BYTES} bytes")
    if n > file_size - 8:
        raise corrupted(path, f"header length {n} does not fit a file of {file_size} bytes")
    raw = f.read(n)
    if len(raw) != n:
        raise corrupted(path, "file ended inside the header")
    try:
        doc = load_json(raw, max_depth=MAX_DEPTH)
    except UntrustedJSONError as err:
        raise corrupted(path, f"header is {err}" if str(err).startswith("not") else f"header: {err}") from None
    if not isinstance(doc, dict):
        raise corrupted(path, "header is not a JSON object")
    header = Header(base=8 + n)
    meta = doc.pop("__metadata__", None)
    if meta is not None:
        if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
            raise corrupted(path, "__metadata__ is not an object of strings")
        header.metadata = meta
    known: list[HeaderEntry] = []
    every: list[HeaderEntry] = []
    for name, info in doc.items():
        entry, is_known = _entry(path, name, info, header.base, file_size)
        every.append(entry)
        if is_known:
            known.append(entry)
        else:
            header.skipped[name] = entry.dtype
    _check_disjoint(path, every)
    header.entries = known
    return header
