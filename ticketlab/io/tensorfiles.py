"""Reading tensor files one tensor (and one slice) at a time, without ever unpickling arbitrary objects.

Two kinds of file, one interface (:class:`TensorRef`: name, shape, dtype and reads of flat element ranges):

- **safetensors** files (:class:`SafetensorsFile`): an 8-byte little-endian header length ``n``, ``n`` bytes of
  JSON ``{name: {"dtype": "BF16", "shape": [...], "data_offsets": [begin, end]}, "__metadata__": {...}}``,
  then the raw little-endian tensors, at ``8 + n + begin``. No third-party library is needed. The header is
  validated in full before any data is read (:mod:`ticketlab.io.safetensors_header`: bounded length and
  nesting, shapes against byte ranges in Python integers, no overlaps), so a truncated, corrupted or crafted
  file is refused with one line. The format has no checksum: a flipped byte in the data is a different weight.
- **PyTorch files** (``torch.save`` of a state dict): loaded with ``torch.load(weights_only=True)`` (memory
  mapped when the file is in the zip format, after every member of the archive passed its CRC-32 check), so a
  file that needs any object other than tensors and plain containers is refused (:func:`load_torch`). Nothing
  is ever unpickled with ``weights_only=False``. Tensors that cannot be read as flat arrays (sparse, quantised,
  complex, expanded views) are named by :func:`unusable_tensor`.

Sharded Hugging Face directories are opened by :mod:`ticketlab.io.checkpoint_source`.

Floating-point data is handed out *raw*: as unsigned integers of the same width (``uint16`` for bfloat16 and
float16, ``uint32`` for float32, ...), so that "is this weight exactly zero" is a bit test
(``raw & ~sign_bit != 0``, so −0.0 counts as zero) that needs no conversion and no copy as float. bfloat16 is
converted to float32 exactly (``raw << 16``) only where values are needed.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Mapping

import numpy as np

from ticketlab.errors import TicketFileError
from ticketlab.io.safe_json import short_repr
from ticketlab.io.safetensors_header import SAFETENSORS_DTYPES, corrupted, read_header

_TORCH_TO_ST = {v[0]: k for k, v in SAFETENSORS_DTYPES.items()}
# numpy dtype of the *values* of each torch dtype (bfloat16 and float8 have none: float32 holds them exactly)
_VALUE_DTYPES = {"float64": "<f8", "float32": "<f4", "float16": "<f2", "bfloat16": "<f4", "float8_e4m3fn": "<f4",
                 "float8_e5m2": "<f4", "int64": "<i8", "int32": "<i4", "int16": "<i2", "int8": "i1",
                 "uint64": "<u8", "uint32": "<u4", "uint16": "<u2", "uint8": "u1", "bool": "?"}


def nonzero(raw: np.ndarray, dtype: str) -> np.ndarray:
    """Boolean array: which entries of ``raw`` (as handed out by :meth:`TensorRef.raw`) are not exactly zero.

    For floating dtypes the sign bit is ignored (−0.0 is zero); NaN and infinities count as nonzero.
    """
    if dtype.startswith("float"):
        bits = raw.dtype.itemsize * 8
        return (raw & np.array((1 << (bits - 1)) - 1, dtype=raw.dtype)) != 0
    return raw != 0


def raw_to_values(raw: np.ndarray, dtype: str) -> np.ndarray:
    """Numeric values of a raw slice: the float view, float32 for bfloat16 (exact); float8 is not supported."""
    if dtype == "bfloat16":
        return (raw.astype(np.uint32) << 16).view(np.float32)
    if dtype.startswith("float8"):
        import torch

        t = torch.from_numpy(np.ascontiguousarray(raw)).view(getattr(torch, dtype))
        return t.float().numpy()
    return raw.view(_VALUE_DTYPES[dtype]) if raw.dtype != np.dtype(_VALUE_DTYPES[dtype]) else raw


@dataclass
class TensorRef:
    """A tensor in a file, not yet read.

    Attributes
    ----------
    name : str
        Its key in the file (not normalised).
    shape : tuple of int
    dtype : str
        torch dtype name, e.g. ``"bfloat16"``.
    source : str
        The file it lives in (for messages).
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    source: str
    _read: Callable[[int, int], np.ndarray]

    @property
    def size(self) -> int:
        return math.prod(self.shape)  # Python integers: never wraps around

    @property
    def is_float(self) -> bool:
        return self.dtype.startswith("float") or self.dtype == "bfloat16"

    def raw(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Flat elements ``[start, stop)`` in C order, floats as unsigned integers of their width (a copy or a
        read; never a view of a memory map that would outlive the call)."""
        stop = self.size if stop is None else stop
        return self._read(start, stop)

    def values(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Flat elements ``[start, stop)`` as numbers (bfloat16 as exact float32)."""
        raw = self.raw(start, stop)
        return raw_to_values(raw, self.dtype) if self.is_float else raw.view(_VALUE_DTYPES[self.dtype])


# ----------------------------------------------------------------------------------------------------------
# safetensors


class SafetensorsFile:
    """A ``.safetensors`` file opened for reading tensor by tensor (see the module docstring for the layout).

    Use as a context manager; :attr:`tensors` maps names to :class:`TensorRef` in file-header order, and
    :attr:`metadata` is the ``__metadata__`` dict (strings). Tensors of dtypes this reader does not know (e.g.
    4-bit formats) are listed in :attr:`skipped` with their dtype.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.metadata: dict[str, str] = {}
        self.tensors: dict[str, TensorRef] = {}
        self.skipped: dict[str, str] = {}
        try:
            self._f: BinaryIO | None = open(self.path, "rb")
        except OSError as err:
            raise TicketFileError(f"{self.path}: cannot open ({err.strerror or err})") from None
        try:
            self._parse()
        except BaseException:
            self.close()
            raise

    def _bad(self, why: str) -> TicketFileError:
        return corrupted(self.path, why)

    def _parse(self) -> None:
        header = read_header(self._f, self.path)  # validated in full: see ticketlab.io.safetensors_header
        self.metadata = dict(header.metadata)
        self.skipped = dict(header.skipped)
        for e in header.entries:
            torch_dtype, raw_dtype, _ = SAFETENSORS_DTYPES[e.dtype]
            self.tensors[e.name] = TensorRef(e.name, e.shape, torch_dtype, str(self.path),
                                             self._reader(e.name, header.base + e.begin, np.dtype(raw_dtype)))

    def _reader(self, name: str, offset: int, raw: np.dtype) -> Callable[[int, int], np.ndarray]:
        def read(start: int, stop: int) -> np.ndarray:
            if self._f is None:
                raise TicketFileError(f"{self.path}: read of {name!r} after the file was closed")
            count = max(0, stop - start)
            self._f.seek(offset + start * raw.itemsize)
            out = np.empty(count, dtype=raw)
            got = self._f.readinto(memoryview(out).cast("B")) if count else 0
            if got != count * raw.itemsize:
                raise self._bad(f"tensor {short_repr(name)}: file ended while reading")
            return out

        return read

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    def __enter__(self) -> "SafetensorsFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_safetensors(path: str | os.PathLike,
                      tensors: Iterable[tuple[str, tuple[int, ...], str, Iterable[np.ndarray]]],
                      metadata: Mapping[str, str] | None = None) -> None:
    """Write a safetensors file tensor by tensor.

    Parameters
    ----------
    path : path-like
    tensors : iterable of (name, shape, torch dtype name, chunks)
        ``chunks`` yields the tensor's flat C-order data as numpy arrays of the *raw* dtype (bfloat16 as uint16
        bit patterns) or of a dtype of the same width; their lengths must add up to the tensor's size. The list
        of names, shapes and dtypes is materialised first (the header precedes the data); the chunks are
        consumed one at a time, so a tensor never has to be in memory whole.
    metadata : mapping of str to str, optional
        Stored as ``__metadata__``.
    """
    entries = [(str(n), tuple(int(s) for s in shape), str(dt), chunks) for n, shape, dt, chunks in tensors]
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    for name, shape, dt, _ in entries:
        if dt not in _TORCH_TO_ST:
            raise TicketFileError(f"{path}: cannot write dtype {dt!r} of {name!r} to safetensors")
        nbytes = math.prod(shape) * np.dtype(SAFETENSORS_DTYPES[_TORCH_TO_ST[dt]][1]).itemsize
        header[name] = {"dtype": _TORCH_TO_ST[dt], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # the library pads the header to 8 bytes
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for name, shape, dt, chunks in entries:
            want = header[name]["data_offsets"][1] - header[name]["data_offsets"][0]
            written = 0
            for chunk in chunks:
                arr = np.ascontiguousarray(chunk)
                if arr.dtype.byteorder == ">":
                    arr = arr.astype(arr.dtype.newbyteorder("<"))
                f.write(memoryview(arr).cast("B"))
                written += arr.nbytes
            if written != want:
                raise TicketFileError(f"{path}: tensor {name!r} got {written} bytes of data, expected {want}")


# ----------------------------------------------------------------------------------------------------------
# PyTorch files


# What torch's weights-only unpickler says of bytes that are not a pickle at all (rather than objects it refuses)
_NOT_A_PICKLE = ("Unsupported operand", "String is too long", "persistent id", "persistent_load", "Expected bytes")


def _unpickling_detail(err: Exception) -> str:
    """The informative line of torch's multi-line weights-only message (what it refused, or why it stopped)."""
    text = str(err)
    if "WeightsUnpickler error:" in text:
        rest = [line.strip() for line in text.split("WeightsUnpickler error:", 1)[1].splitlines() if line.strip()]
        if rest:
            return rest[0][:200]
    for line in text.splitlines():
        if "GLOBAL" in line or "Unsupported" in line:
            return line.strip()[:200]
    return text.splitlines()[0][:200] if text else type(err).__name__


def _check_zip(path: Path) -> None:
    """Raise if ``path`` starts like a zip archive (as torch's format does) and a member fails its CRC-32."""
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":
            return
    with zipfile.ZipFile(path) as z:
        bad = z.testzip()  # reads every member in 1 MiB blocks
    if bad is not None:
        raise zipfile.BadZipFile(f"member {short_repr(bad)} fails its CRC-32 check")


def load_torch(path: str | os.PathLike, *, what: str = "file", mmap: bool = True) -> Any:
    """``torch.load(path, weights_only=True)``, memory-mapped when possible, with one-line errors.

    A file that needs unpickling of objects other than tensors and plain containers (a whole ``nn.Module``
    saved with ``torch.save(model)``, a checkpoint holding numpy scalars, a malicious pickle) is refused with
    :class:`TicketFileError` before any of its code can run; truncated or corrupted files likewise. Files in
    the zip format (every ``torch.save`` since PyTorch 1.6) have every member checked against its CRC-32 first
    (memory-mapped loading would not), so a flipped byte in the weights is an error, not a different weight.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise TicketFileError(f"{path}: no such {what}")
    try:
        _check_zip(path)
        try:
            return torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)
        except RuntimeError as err:
            if mmap and "mmap" in str(err):  # the legacy (pre-1.6, non-zip) format cannot be memory-mapped
                return torch.load(str(path), map_location="cpu", weights_only=True)
            raise
    except pickle.UnpicklingError as err:
        if any(w in str(err) for w in _NOT_A_PICKLE):
            raise TicketFileError(f"{path}: cannot read the {what}; it is not a PyTorch file, or it is truncated or "
                                  f"corrupted ({_unpickling_detail(err)})") from None
        raise TicketFileError(
            f"{path}: refused: the {what} holds pickled Python objects other than tensors ({_unpickling_detail(err)})."
            " ticketlab loads .pth/.pt files only with torch.load(weights_only=True) and never unpickles "
            "arbitrary objects; if it is a whole model saved with torch.save(model), save model.state_dict() "
            "instead"
        ) from None
    except Exception as err:  # torch raises RuntimeError, KeyError, EOFError, ... on damaged files
        detail = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise TicketFileError(f"{path}: cannot read the {what}; it is truncated or corrupted ({detail})") from None


def state_dict_of(obj: Any, path: str | os.PathLike) -> tuple[dict[str, Any], list[str]]:
    """The state dict inside what :func:`load_torch` returned: the mapping itself, or its ``"state_dict"`` /
    ``"model_state_dict"`` / ``"model"`` entry (training checkpoints). Non-tensor entries are dropped with a
    note. Returns ``(state_dict, notes)``."""
    import torch

    notes: list[str] = []
    if isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in ("state_dict", "model_state_dict", "model", "module"):
            inner = obj.get(key)
            if isinstance(inner, Mapping) and any(isinstance(v, torch.Tensor) for v in inner.values()):
                notes.append(f"{path}: using its {key!r} entry as the state dict")
                obj = inner
                break
    if not isinstance(obj, Mapping) or not any(isinstance(v, torch.Tensor) for v in obj.values()):
        found = f"a {type(obj).__name__}" if not isinstance(obj, Mapping) else \
            f"a dict with keys {', '.join(map(str, list(obj)[:6]))}"
        raise TicketFileError(f"{path}: holds no state dict (a mapping of names to tensors); found {found}")
    sd = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    dropped = [str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if dropped:
        notes.append(f"{path}: ignored {len(dropped)} entries that are not tensors ({', '.join(dropped[:5])})")
    return sd, notes


def torch_raw(t: Any) -> np.ndarray:
    """A torch tensor's flat data as numpy, floats as unsigned integers of their width (no float copy)."""
    import torch

    t = t.detach().reshape(-1)
    name = str(t.dtype).replace("torch.", "")
    if name in ("bfloat16", "float16"):
        return t.view(torch.int16).numpy().view(np.uint16)
    if name == "float32":
        return t.view(torch.int32).numpy().view(np.uint32)
    if name == "float64":
        return t.view(torch.int64).numpy().view(np.uint64)
    if name.startswith("float8"):
        return t.view(torch.uint8).numpy()
    if name == "bool":
        return t.numpy().view(np.uint8)
    return t.numpy()


def torch_ref(name: str, t: Any, source: str) -> TensorRef:
    """A :class:`TensorRef` over an in-memory (or memory-mapped) torch tensor."""
    dtype = str(t.dtype).replace("torch.", "")
    flat = t.detach().reshape(-1)

    def read(start: int, stop: int) -> np.ndarray:
        return np.array(torch_raw(flat[start:stop]), copy=True)

    return TensorRef(name, tuple(int(s) for s in t.shape), dtype, source, read)


def unusable_tensor(t: Any) -> str | None:
    """Why a loaded torch tensor cannot be read as a flat array (``None`` when it can): a layout other than
    strided (sparse, quantised), a dtype without a numpy counterpart (complex, quantised, 4-bit), or more elements
    than its storage holds (an expanded view: stride 0 over a few values, which reading whole would multiply)."""
    import torch

    dtype = str(t.dtype).replace("torch.", "")
    if t.is_quantized:
        return f"a quantised tensor ({dtype}), which this reader does not know"
    if t.layout != torch.strided:
        return f"its layout {str(t.layout).replace('torch.', '')} is not a plain (strided) tensor"
    if dtype not in _VALUE_DTYPES:
        return f"dtype {dtype}, which this reader does not know"
    if t.numel() * t.element_size() > t.untyped_storage().nbytes():
        return (f"an expanded view: shape {list(t.shape)} over a storage of {t.untyped_storage().nbytes()} bytes; "
                "save it with .contiguous()")
    return None
