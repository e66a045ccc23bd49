"""Masks and the vocabulary used to describe them.

A *mask* is a ``dict[str, numpy.ndarray]`` of boolean arrays keyed by canonical PyTorch parameter name
(``"layer1.0.conv1.weight"``); ``True`` marks a kept weight. The quantities below are used everywhere:

- *kept*: number of ``True`` entries;
- *density*: kept / size, the kept fraction, in [0, 1];
- *sparsity*: 1 − density;
- *compression*: size / kept, a ratio ≥ 1 (``inf`` when nothing is kept);
- *rate*: the fraction of the *remaining* weights pruned at one level.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np

from ticketlab.errors import ConfigError

#: Kinds of prunable tensors recorded in a ticket file.
TENSOR_KINDS = ("linear", "conv", "other")


@dataclass(frozen=True)
class TensorInfo:
    """One maskable tensor of a model.

    Attributes
    ----------
    name : str
        Canonical PyTorch parameter name, e.g. ``"fc1.weight"``.
    shape : tuple of int
        The tensor's shape; for a Linear weight ``(out_features, in_features)``, for a Conv2d weight
        ``(out_channels, in_channels, kh, kw)``.
    kind : str
        ``"linear"``, ``"conv"`` or ``"other"``.
    pruned : bool
        Whether pruning acts on this tensor. Tensors that are masked but never pruned (e.g. an output layer
        left out) keep an all-ones mask and ``pruned=False``.
    """

    name: str
    shape: tuple[int, ...]
    kind: str = "other"
    pruned: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or "/" in self.name:
            raise ConfigError(f"tensor name must be a non-empty string without '/'; got {self.name!r}")
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        if any(s < 0 for s in self.shape):
            raise ConfigError(f"tensor {self.name!r} has a negative dimension in shape {self.shape}")
        if self.kind not in TENSOR_KINDS:
            raise ConfigError(f"tensor kind must be one of {', '.join(TENSOR_KINDS)}; got {self.kind!r}")
        object.__setattr__(self, "pruned", bool(self.pruned))

    @property
    def size(self) -> int:
        """Number of weights in the tensor."""
        return int(np.prod(self.shape, dtype=np.int64))


def as_bool_mask(name: str, value: object, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Return ``value`` as a boolean numpy array, checking that it holds only 0/1 and has ``shape``.

    Accepts numpy arrays and anything ``numpy.asarray`` understands (torch CPU tensors included) of bool,
    integer or float dtype. Raises :class:`ConfigError` naming the tensor otherwise.
    """
    arr = np.asarray(value)
    if shape is not None and tuple(arr.shape) != tuple(shape):
        raise ConfigError(f"mask for {name!r} has shape {tuple(arr.shape)}, expected {tuple(shape)}")
    if arr.dtype == np.bool_:
        return arr
    if arr.dtype.kind not in "biuf":
        raise ConfigError(f"mask for {name!r} has dtype {arr.dtype}; masks hold 0/1 or booleans")
    kept = arr == 1
    if not np.all(kept | (arr == 0)):
        bad = arr[~(kept | (arr == 0))].flat[0]
        raise ConfigError(f"mask for {name!r} holds values other than 0 and 1 (e.g. {bad!r})")
    return kept


def check_masks(masks: Mapping[str, object], tensors: Iterable[TensorInfo]) -> dict[str, np.ndarray]:
    """Validate ``masks`` against the tensor table and return them as boolean arrays in table order.

    Every tensor of the table must have a mask of its shape, and no mask may name an unknown tensor.
    """
    tensors = list(tensors)
    known = {t.name for t in tensors}
    unknown = [name for name in masks if name not in known]
    if unknown:
        raise ConfigError(
            f"mask names a tensor the model does not have: {unknown[0]!r}; the model's tensors are: "
            + ", ".join(t.name for t in tensors)
        )
    missing = [t.name for t in tensors if t.name not in masks]
    if missing:
        raise ConfigError(f"no mask given for tensor {missing[0]!r} (missing: {', '.join(missing)})")
    return {t.name: as_bool_mask(t.name, masks[t.name], t.shape) for t in tensors}


def kept_count(mask: np.ndarray) -> int:
    """Number of kept (``True``) entries."""
    return int(np.count_nonzero(mask))


def density(kept: int, size: int) -> float:
    """Kept fraction ``kept / size``; ``nan`` for an empty tensor."""
    return kept / size if size else float("nan")


def sparsity(kept: int, size: int) -> float:
    """Pruned fraction ``1 - kept / size``; ``nan`` for an empty tensor."""
    return 1.0 - kept / size if size else float("nan")


def compression(kept: int, size: int) -> float:
    """Compression ratio ``size / kept`` (≥ 1); ``inf`` when nothing is kept."""
    return size / kept if kept else float("inf")


def total_density(masks: Mapping[str, np.ndarray]) -> float:
    """Kept fraction over all weights of all masks together (not the mean of per-layer densities)."""
    kept = sum(kept_count(m) for m in masks.values())
    size = sum(int(np.size(m)) for m in masks.values())
    return density(kept, size)


# ----------------------------------------------------------------------------------------------------------
# Bit-packing: the one packer of the project (ticket files store masks this way; overlap counts on it).


def pack_mask(mask: np.ndarray, *, word_bytes: int = 1) -> np.ndarray:
    """Bit-pack a boolean mask: ``numpy.packbits`` of the C-order flattened array (big bit order).

    Parameters
    ----------
    mask : ndarray of bool, any shape
    word_bytes : int
        Zero-pad the result to a multiple of this many bytes (8 lets counting code view it as uint64).

    Returns
    -------
    ndarray of uint8, ``ceil(mask.size / 8)`` bytes rounded up to a multiple of ``word_bytes``.
    """
    flat = np.ascontiguousarray(mask, dtype=bool).reshape(-1)
    packed = np.packbits(flat)
    if word_bytes > 1 and packed.size % word_bytes:
        padded = np.zeros(-(-packed.size // word_bytes) * word_bytes, dtype=np.uint8)
        padded[:packed.size] = packed
        return padded
    return packed


def unpack_mask(packed: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`pack_mask`: a boolean array of ``shape`` (padding bytes are ignored)."""
    n = int(np.prod(shape, dtype=np.int64))
    return np.unpackbits(packed, count=n).view(bool).reshape(shape)


# ----------------------------------------------------------------------------------------------------------
# Counting kept weights of packed masks (popcount): the ticket file checks its stored kept counts with it on
# every read, and overlap counting (ticketlab.analysis.overlap.counts) counts intersections with its kernel.

#: Set bits of every byte value (the fallback where numpy has no ``bitwise_count``, numpy < 2.0).
POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)
_HAS_BITWISE_COUNT = hasattr(np, "bitwise_count")
_POPCOUNT_BLOCK_WORDS = 1 << 16  # 512 KiB of uint64 words per step: the temporaries stay in L2 cache


def _sum_counts(counts: np.ndarray) -> int:
    """Sum of per-word bit counts (uint8, each ≤ 64).

    Rows of 512 counts are added element-wise in uint16 (at most 512 · 64 = 32768, no overflow), which numpy
    vectorises; this is about 5x faster than ``counts.sum()``, which widens every element to 64 bits.
    """
    m = counts.size
    k = m - m % 512
    total = 0
    if k:
        total += int(counts[:k].reshape(512, -1).sum(axis=0, dtype=np.uint16).sum(dtype=np.uint64))
    if k < m:
        total += int(counts[k:].sum(dtype=np.uint64))
    return total


def popcount_words(words: np.ndarray, out: np.ndarray, *, bitwise_count: bool = _HAS_BITWISE_COUNT) -> int:
    """Total set bits of a uint64 array; ``out`` is a uint8 scratch array of the same length.

    ``bitwise_count=False`` uses a byte lookup table instead of ``numpy.bitwise_count`` (numpy < 2.0).
    """
    if bitwise_count:
        np.bitwise_count(words, out=out)
        return _sum_counts(out)
    return int(POPCOUNT8[words.view(np.uint8)].sum(dtype=np.uint64))


def popcount(packed: np.ndarray, size: int) -> int:
    """Kept weights of a packed mask: the set bits among the first ``size`` bits of ``packed``.

    Parameters
    ----------
    packed : ndarray of uint8, shape (≥ ceil(size / 8),)
        As :func:`pack_mask` makes it; padding bits past ``size`` are not counted.
    size : int
        Number of weights of the tensor.
    """
    size = int(size)
    nbytes = -(-size // 8)
    packed = np.ascontiguousarray(packed, dtype=np.uint8).reshape(-1)
    if packed.size < nbytes:
        raise ConfigError(f"a packed mask of {size} weights needs {nbytes} bytes; got {packed.size}")
    words = size // 64
    total = 0
    if words:
        head = packed[: words * 8].view(np.uint64)
        step = min(words, _POPCOUNT_BLOCK_WORDS)
        scratch = np.empty(step, dtype=np.uint8)
        for start in range(0, words, step):
            block = head[start:start + step]
            total += popcount_words(block, scratch[:block.size])
    tail = packed[words * 8: nbytes].copy()
    if tail.size:
        if size % 8:
            tail[-1] &= (0xFF << (8 - size % 8)) & 0xFF  # bits past the last weight do not count
        total += int(POPCOUNT8[tail].sum())
    return total
