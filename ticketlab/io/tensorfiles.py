"""Reading tensor files one tensor (and one slice) at a time, without ever unpickling arbitrary objects.

Three sources, one interface (:class:`TensorRef`: name, shape, dtype and reads of flat element ranges):

- **safetensors** files, read by this module: an 8-byte little-endian header length ``n``, ``n`` bytes of JSON
  ``{name: {"dtype": "BF16", "shape": [...], "data_offsets": [begin, end]}, "__metadata__": {...}}``, then
  the raw little-endian tensors, at ``8 + n + begin``. No third-party library is needed; every offset and
  length is checked against the file, so a truncated or corrupted file is refused with a message.
- **PyTorch files** (``torch.save`` of a state dict): loaded with ``torch.load(weights_only=True)`` (memory
  mapped when the file is in the zip format), so a file that needs any object other than tensors and plain
  containers is refused (:func:`load_torch`). Nothing is ever unpickled with ``weights_only=False``.
- **sharded Hugging Face directories**: ``model.safetensors.index.json`` (or ``pytorch_model.bin.index.json``)
  whose ``weight_map`` names the shard of every tensor; or a directory with one ``model.safetensors`` /
  ``pytorch_model.bin``.

Floating-point data is handed out *raw*: as unsigned integers of the same width (``uint16`` for bfloat16 and
float16, ``uint32`` for float32, ...), so that "is this weight exactly zero" is a bit test
(``raw & ~sign_bit != 0``, so −0.0 counts as zero) that needs no conversion and no copy as float. bfloat16 is
converted to float32 exactly (``raw << 16``) only where values are needed.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Mapping

import numpy as np

from ticketlab.errors import TicketFileError

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
_TORCH_TO_ST = {v[0]: k for k, v in SAFETENSORS_DTYPES.items()}
# numpy dtype of the *values* of each torch dtype (bfloat16 and float8 have none: float32 holds them exactly)
_VALUE_DTYPES = {"float64": "<f8", "float32": "<f4", "float16": "<f2", "bfloat16": "<f4", "float8_e4m3fn": "<f4",
                 "float8_e5m2": "<f4", "int64": "<i8", "int32": "<i4", "int16": "<i2", "int8": "i1",
                 "uint64": "<u8", "uint32": "<u4", "uint16": "<u2", "uint8": "u1", "bool": "?"}
_MAX_HEADER = 100 * 1024 * 1024  # the safetensors library's own limit
INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
SINGLE_FILES = ("model.safetensors", "pytorch_model.bin")


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
        return int(np.prod(self.shape, dtype=np.int64))

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
        return TicketFileError(f"{self.path}: not a valid safetensors file; it is truncated or corrupted ({why})")

    def _parse(self) -> None:
        f = self._f
        file_size = os.fstat(f.fileno()).st_size
        head = f.read(8)
        if len(head) < 8:
            raise self._bad("shorter than its 8-byte header length")
        (n,) = struct.unpack("<Q", head)
        if n > _MAX_HEADER or n > file_size - 8:
            raise self._bad(f"header length {n} does not fit a file of {file_size} bytes")
        try:
            header = json.loads(f.read(n).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise self._bad(f"header is not JSON: {err}") from None
        if not isinstance(header, dict):
            raise self._bad("header is not a JSON object")
        self._base = 8 + n
        data_size = file_size - self._base
        meta = header.pop("__metadata__", None) or {}
        self.metadata = {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}
        for name, info in header.items():
            try:
                st_dtype = info["dtype"]
                shape = tuple(int(s) for s in info["shape"])
                begin, end = (int(x) for x in info["data_offsets"])
            except (KeyError, TypeError, ValueError):
                raise self._bad(f"entry {name!r} lacks dtype, shape or data_offsets") from None
            if st_dtype not in SAFETENSORS_DTYPES:
                self.skipped[name] = st_dtype
                continue
            torch_dtype, raw_dtype, _ = SAFETENSORS_DTYPES[st_dtype]
            count = int(np.prod(shape, dtype=np.int64))
            nbytes = count * np.dtype(raw_dtype).itemsize
            if any(s < 0 for s in shape) or not 0 <= begin <= end or end - begin != nbytes:
                raise self._bad(f"tensor {name!r}: offsets [{begin}, {end}) do not match shape {list(shape)} of "
                                f"{st_dtype}")
            if end > data_size:
                raise self._bad(f"tensor {name!r} ends at byte {self._base + end} but the file has {file_size} bytes")
            self.tensors[name] = TensorRef(name, shape, torch_dtype, str(self.path),
                                           self._reader(name, self._base + begin, np.dtype(raw_dtype)))

    def _reader(self, name: str, offset: int, raw: np.dtype) -> Callable[[int, int], np.ndarray]:
        def read(start: int, stop: int) -> np.ndarray:
            if self._f is None:
                raise TicketFileError(f"{self.path}: read of {name!r} after the file was closed")
            count = max(0, stop - start)
            self._f.seek(offset + start * raw.itemsize)
            out = np.empty(count, dtype=raw)
            got = self._f.readinto(memoryview(out).cast("B")) if count else 0
            if got != count * raw.itemsize:
                raise self._bad(f"tensor {name!r}: file ended while reading")
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
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(SAFETENSORS_DTYPES[_TORCH_TO_ST[dt]][1]).itemsize
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


def _unpickling_detail(err: Exception) -> str:
    for line in str(err).splitlines():
        if "GLOBAL" in line or "Unsupported" in line:
            return line.strip()
    return str(err).splitlines()[0][:200] if str(err) else type(err).__name__


def load_torch(path: str | os.PathLike, *, what: str = "file", mmap: bool = True) -> Any:
    """``torch.load(path, weights_only=True)``, memory-mapped when possible, with one-line errors.

    A file that needs unpickling of objects other than tensors and plain containers (a whole ``nn.Module``
    saved with ``torch.save(model)``, a checkpoint holding numpy scalars, a malicious pickle) is refused with
    :class:`TicketFileError` before any of its code can run; truncated or corrupted files likewise.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise TicketFileError(f"{path}: no such {what}")
    try:
        try:
            return torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)
        except RuntimeError as err:
            if mmap and "mmap" in str(err):  # the legacy (pre-1.6, non-zip) format cannot be memory-mapped
                return torch.load(str(path), map_location="cpu", weights_only=True)
            raise
    except pickle.UnpicklingError as err:
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


# ----------------------------------------------------------------------------------------------------------
# Any checkpoint


class Checkpoint:
    """A dense checkpoint opened tensor by tensor: a PyTorch state dict file, a ``.safetensors`` file, or a
    (sharded) Hugging Face directory. :attr:`tensors` maps names to :class:`TensorRef`; :attr:`notes` says what
    was skipped. Close it (or use ``with``) to release file handles."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.tensors: dict[str, TensorRef] = {}
        self.notes: list[str] = []
        self._files: list[SafetensorsFile] = []
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:
        p = self.path
        if not p.exists():
            raise TicketFileError(f"{p}: no such file or directory")
        if p.is_dir():
            index = next((p / n for n in INDEX_FILES if (p / n).is_file()), None)
            if index is not None:
                self._open_index(index)
                return
            single = [p / n for n in SINGLE_FILES if (p / n).is_file()]
            if not single:
                raise TicketFileError(
                    f"{p}: a directory without {' or '.join(INDEX_FILES)} or {' / '.join(SINGLE_FILES)}; pass the "
                    "checkpoint file itself, or the directory of a Hugging Face model")
            self._open_file(single[0])
            return
        self._open_file(p)

    def _open_file(self, path: Path, names: Iterable[str] | None = None) -> None:
        if path.suffix == ".safetensors":
            st = SafetensorsFile(path)
            self._files.append(st)
            for name, dt in st.skipped.items():
                self.notes.append(f"{path}: skipped {name!r} of dtype {dt}, which this reader does not know")
            refs = st.tensors
        else:
            sd, notes = state_dict_of(load_torch(path, what="checkpoint"), path)
            self.notes += notes
            refs = {k: torch_ref(k, v, str(path)) for k, v in sd.items()}
        if names is None:
            self.tensors.update(refs)
            return
        for name in names:
            if name not in refs:
                raise TicketFileError(f"{path}: the index names tensor {name!r} in this shard, but the shard lacks it")
            self.tensors[name] = refs[name]

    def _open_index(self, index: Path) -> None:
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
            if not isinstance(weight_map, dict):
                raise TypeError("weight_map is not an object")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as err:
            raise TicketFileError(f"{index}: not a valid sharded-checkpoint index ({err})") from None
        shards: dict[str, list[str]] = {}
        for name, shard in weight_map.items():
            shards.setdefault(str(shard), []).append(str(name))
        for shard, names in shards.items():
            shard_path = index.parent / shard
            if not shard_path.resolve().is_relative_to(index.parent.resolve()):
                raise TicketFileError(f"{index}: shard path {shard!r} leaves the directory")
            if not shard_path.is_file():
                raise TicketFileError(f"{index}: names shard {shard}, which is missing from {index.parent}")
            self._open_file(shard_path, names)

    def close(self) -> None:
        for f in self._files:
            f.close()
        self._files = []

    def __enter__(self) -> "Checkpoint":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def iter_chunks(ref: TensorRef, max_elements: int, align_rows: int = 16) -> Iterator[tuple[int, int]]:
    """Flat ``[start, stop)`` ranges covering ``ref`` in blocks of about ``max_elements``.

    Normally a block holds whole leading-dimension slices, a multiple of ``align_rows`` of them (except the last
    block), so that groups of up to ``align_rows`` consecutive slices or elements never straddle two blocks and
    every block but the last holds a multiple of 8 elements (bit packing stays aligned). When ``align_rows``
    slices would exceed ``4 * max_elements`` (e.g. shape ``(1, 10**9)``), blocks split slices instead, at
    multiples of ``align_rows`` elements; see :func:`blocks_hold_whole_slices`."""
    size = ref.size
    if size == 0:
        return
    row = size // ref.shape[0] if ref.shape and ref.shape[0] else size
    if not blocks_hold_whole_slices(ref, max_elements, align_rows):  # huge slices: split inside them, at
        step = max(align_rows, max_elements // align_rows * align_rows)  # multiples of align_rows elements
    else:
        step = max(align_rows, (max_elements // row) // align_rows * align_rows) * row
    for start in range(0, size, step):
        yield start, min(size, start + step)


def blocks_hold_whole_slices(ref: TensorRef, max_elements: int, align_rows: int = 16) -> bool:
    """Whether :func:`iter_chunks` gives blocks of whole leading-dimension slices for ``ref``."""
    row = ref.size // ref.shape[0] if ref.shape and ref.shape[0] else ref.size
    return row * align_rows <= max(4 * max_elements, align_rows)
