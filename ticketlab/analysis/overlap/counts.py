"""Overlap counts of two masks: the four numbers every overlap metric derives from, counted bit-packed.

Two masks A and B of one tensor of N weights are summarised by :class:`OverlapCounts` (``size``, ``kept_a``,
``kept_b``, ``intersection``); the union and the Hamming count follow from them. Masks are compared bit-packed
(``numpy.packbits``, 1 bit per weight): the intersection is the popcount of ``a & b`` on uint64 words
(``numpy.bitwise_count``, or a byte lookup table on numpy < 2.0), taken in cache-sized blocks so that no
full-size temporary is made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from ticketlab.errors import ConfigError
from ticketlab.masks import POPCOUNT8 as _POPCOUNT8
from ticketlab.masks import pack_mask, popcount_words

__all__ = ["OverlapCounts", "total_counts", "pack", "packed_overlap_counts", "overlap_counts"]


@dataclass(frozen=True)
class OverlapCounts:
    """The four counts that every overlap metric of two masks of one tensor (or of a model) derives from.

    Attributes
    ----------
    size : int
        N, the number of weights the masks cover.
    kept_a, kept_b : int
        ``|A|`` and ``|B|``, the weights each mask keeps.
    intersection : int
        ``|A ∩ B|``, the weights both masks keep.
    """

    size: int
    kept_a: int
    kept_b: int
    intersection: int

    def __post_init__(self) -> None:
        for name in ("size", "kept_a", "kept_b", "intersection"):
            object.__setattr__(self, name, int(getattr(self, name)))
        n, a, b, i = self.size, self.kept_a, self.kept_b, self.intersection
        if not (0 <= a <= n and 0 <= b <= n):
            raise ConfigError(f"kept counts must lie in [0, size]; got kept_a={a}, kept_b={b}, size={n}")
        if not max(0, a + b - n) <= i <= min(a, b):
            raise ConfigError(
                f"intersection {i} is impossible for kept_a={a}, kept_b={b} of size {n}; it must lie in "
                f"[{max(0, a + b - n)}, {min(a, b)}]"
            )

    @property
    def union(self) -> int:
        """``|A ∪ B| = kept_a + kept_b − intersection``."""
        return self.kept_a + self.kept_b - self.intersection

    @property
    def hamming(self) -> int:
        """``|A Δ B|``: the number of weights on which the masks differ (kept by exactly one), a count; the
        ``hamming_fraction`` metric divides it by the size."""
        return self.kept_a + self.kept_b - 2 * self.intersection

    def swapped(self) -> "OverlapCounts":
        """The counts of (B, A)."""
        return OverlapCounts(self.size, self.kept_b, self.kept_a, self.intersection)

    def __add__(self, other: "OverlapCounts") -> "OverlapCounts":
        """Pool two tensors' counts (the counts of the concatenated masks)."""
        return OverlapCounts(self.size + other.size, self.kept_a + other.kept_a, self.kept_b + other.kept_b,
                             self.intersection + other.intersection)


def total_counts(counts: Iterable[OverlapCounts]) -> OverlapCounts:
    """Pooled counts of several tensors: each count summed over the tensors."""
    out = OverlapCounts(0, 0, 0, 0)
    for c in counts:
        out = out + c
    return out


# -- bit-packed counting -----------------------------------------------------------------------------------

#: uint64 words per block: 512 KiB per operand, so the temporaries stay in L2 cache.
_BLOCK_WORDS = 1 << 16
_HAS_BITWISE_COUNT = hasattr(np, "bitwise_count")  # numpy >= 2.0


def _popcount_into(words: np.ndarray, out: np.ndarray) -> int:
    """Total set bits of a uint64 array (the one popcount, :func:`ticketlab.masks.popcount_words`)."""
    return popcount_words(words, out, bitwise_count=_HAS_BITWISE_COUNT)


def pack(mask: np.ndarray) -> np.ndarray:
    """Bit-pack a boolean mask for fast counting: :func:`ticketlab.masks.pack_mask` padded to whole uint64
    words (big bit order, the layout of ticket files)."""
    return pack_mask(mask, word_bytes=8)


def _packed_view(packed: np.ndarray, size: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Split packed bytes into a uint64 view of the whole words and the remaining bytes (padding bits cleared)."""
    packed = np.ascontiguousarray(packed)
    if packed.dtype != np.uint8 or packed.ndim != 1:
        raise ConfigError(f"packed mask {what} must be a 1-D uint8 array (numpy.packbits output); "
                          f"got dtype {packed.dtype} with {packed.ndim} dimensions")
    nbytes = -(-int(size) // 8)
    if packed.size < nbytes:
        raise ConfigError(f"packed mask {what} has {packed.size} bytes, but {size} weights need {nbytes}")
    words = int(size) // 64  # whole words of weights; the rest (at most 8 bytes) is counted byte by byte
    head = packed[: words * 8].view(np.uint64)
    tail = packed[words * 8: nbytes].copy()
    if size % 8:
        tail[-1] &= (0xFF << (8 - size % 8)) & 0xFF  # bits past the last weight do not count
    return head, tail


def packed_overlap_counts(a: np.ndarray, b: np.ndarray, size: int, *, kept_a: int | None = None,
                          kept_b: int | None = None) -> OverlapCounts:
    """Overlap counts of two bit-packed masks of ``size`` weights.

    Parameters
    ----------
    a, b : ndarray of uint8, shape (≥ ceil(size / 8),)
        ``numpy.packbits`` of the flattened masks (e.g. from :func:`pack`, or as stored in a ticket file).
        Bits past ``size`` are ignored.
    size : int
        Number of weights N.
    kept_a, kept_b : int, optional
        The kept counts when already known (ticket files store them); counted otherwise, in the same pass.

    Returns
    -------
    OverlapCounts

    Notes
    -----
    One pass over both arrays in blocks of 64 Ki words: ``popcount(a & b)`` with ``numpy.bitwise_count`` on
    uint64 views (a byte lookup table on numpy < 2.0), plus ``popcount(a)`` and ``popcount(b)`` when not given.
    """
    size = int(size)
    ha, ta = _packed_view(a, size, "a")
    hb, tb = _packed_view(b, size, "b")
    need_a, need_b = kept_a is None, kept_b is None
    inter = ka = kb = 0
    n = ha.size
    block = min(_BLOCK_WORDS, max(n, 1))
    buf = np.empty(block, dtype=np.uint64)
    cnt = np.empty(block, dtype=np.uint8)
    for start in range(0, n, block):
        x, y = ha[start:start + block], hb[start:start + block]
        m = x.size
        np.bitwise_and(x, y, out=buf[:m])
        inter += _popcount_into(buf[:m], cnt[:m])
        if need_a:
            ka += _popcount_into(x, cnt[:m])
        if need_b:
            kb += _popcount_into(y, cnt[:m])
    if ta.size:
        inter += int(_POPCOUNT8[ta & tb].sum())
        ka += int(_POPCOUNT8[ta].sum())
        kb += int(_POPCOUNT8[tb].sum())
    return OverlapCounts(size, ka if need_a else kept_a, kb if need_b else kept_b, inter)


def overlap_counts(a: np.ndarray, b: np.ndarray) -> OverlapCounts:
    """Overlap counts of two boolean masks of the same shape (one tensor).

    Parameters
    ----------
    a, b : ndarray of bool
        Masks (``True`` = kept) of equal shape.

    Returns
    -------
    OverlapCounts
        ``size = a.size``, ``kept_a = a.sum()``, ``kept_b = b.sum()``, ``intersection = (a & b).sum()``.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ConfigError(f"masks to compare must have the same shape; got {a.shape} and {b.shape}")
    return packed_overlap_counts(pack(a), pack(b), a.size)
