"""Mask overlap: intersection counts, a metric registry, the chance level and tidy tables.

Two masks A and B of one tensor of N weights keep ``kept_a = |A|`` and ``kept_b = |B|`` weights. Everything
here is computed from four counts (:class:`OverlapCounts`)::

    intersection  |A ∩ B|                     weights kept by both
    union         |A ∪ B| = kept_a + kept_b − intersection
    hamming       |A Δ B| = union − intersection   weights kept by exactly one mask (a count)
    jaccard       |A ∩ B| / |A ∪ B|           intersection over union (IoU), 1 when both masks are empty

Model totals pool the counts of all layers (the Jaccard of a model is Σ|A∩B| / Σ|A∪B|, as in Paganini & Forde
2020b), never averages of per-layer ratios.

**Chance level.** The null model keeps, in every layer, the same number of weights as each observed mask, but
chosen uniformly at random and independently for A and B. In a layer the intersection is then hypergeometric,
``X ~ Hypergeometric(N, kept_a, kept_b)`` (draw kept_b of N weights of which kept_a are "kept by A"):

- ``E|A∩B| = kept_a · kept_b / N`` and ``Var|A∩B| = kept_b · p(1 − p) · (N − kept_b) / (N − 1)``,
  p = kept_a / N.
- For a model, the expected intersection is the *sum* of the per-layer expectations. The pooled density is never
  used: uneven layer densities alone raise the expected overlap above ``d_a · d_b · N``.
- Expected Jaccard is defined as the ratio of expectations ``E|A∩B| / (kept_a + kept_b − E|A∩B|)``
  (:func:`expected_jaccard`). Because the union is ``kept_a + kept_b − X``, this is ``f(E X)`` for the convex
  ``f(x) = x / (kept_a + kept_b − x)``, which slightly *underestimates* ``E[f(X)]`` (Jensen); the gap is about
  ``f''(E X) · Var X / 2``, e.g. 0.1 % of the value for N = 1000, kept 200 and 300, and shrinks as 1/N.
- The p-value is one-sided, ``P(X ≥ observed)``: small when the masks share more weights than chance. For one
  layer it is the exact hypergeometric survival function (scipy). For a model total it is the tail of the sum of
  independent per-layer hypergeometrics, computed by :func:`total_intersection_pvalue`: by exact convolution of
  the per-layer pmfs when that is cheap (``method="convolution"``), otherwise by a normal approximation with
  continuity correction (``method="normal"``); see that function for the details and error bounds.

**Speed.** Masks are compared bit-packed (``numpy.packbits``, 1 bit per weight): the intersection is the
popcount of ``a & b`` on uint64 words (``numpy.bitwise_count``, or a byte lookup table on numpy < 2.0), taken in
cache-sized blocks so that no full-size temporary is made. The union and Hamming distance follow from the
counts, so only the intersection (and the kept counts, when not already known) is ever counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from ticketlab.errors import ConfigError
from ticketlab.masks import pack_mask

# ----------------------------------------------------------------------------------------------------------
# Counts


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
        """``|A Δ B|``: the number of weights on which the masks differ (kept by exactly one)."""
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
_POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)
_HAS_BITWISE_COUNT = hasattr(np, "bitwise_count")  # numpy >= 2.0


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


def _popcount_into(words: np.ndarray, out: np.ndarray) -> int:
    """Total set bits of a uint64 array; ``out`` is a uint8 scratch array of the same length."""
    if _HAS_BITWISE_COUNT:
        np.bitwise_count(words, out=out)
        return _sum_counts(out)
    return int(_POPCOUNT8[words.view(np.uint8)].sum(dtype=np.uint64))


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


# ----------------------------------------------------------------------------------------------------------
# Metric registry


@dataclass(frozen=True)
class OverlapMetric:
    """A similarity or distance of two masks computed from their :class:`OverlapCounts`.

    Attributes
    ----------
    name : str
        Registry name; ``*_overlap`` and ``*_coefficient`` are similarities (higher = more alike),
        ``*_distance`` are distances (lower = more alike).
    func : callable
        ``func(counts) -> float``.
    symmetric : bool
        Whether ``metric(A, B) == metric(B, A)`` for all masks.
    identity : float
        ``metric(A, A)`` for every mask A (including an empty one).
    bounds : tuple of float
        The closed range ``(low, high)`` every value lies in (NaN is allowed only where documented).
    kind : str
        ``"similarity"`` or ``"distance"``.
    description : str
        The formula, for ``--help`` and the docs.
    """

    name: str
    func: Callable[[OverlapCounts], float]
    symmetric: bool
    identity: float
    bounds: tuple[float, float]
    kind: str
    description: str

    def __call__(self, counts: OverlapCounts) -> float:
        return float(self.func(counts))


#: All overlap metrics by name; filled by :func:`register_metric`.
METRICS: dict[str, OverlapMetric] = {}
_KINDS = ("similarity", "distance")


def register_metric(name: str, *, symmetric: bool, identity: float, bounds: tuple[float, float], kind: str,
                    description: str) -> Callable[[Callable[[OverlapCounts], float]], Callable]:
    """Decorator adding ``func(counts) -> float`` to :data:`METRICS`; every property must be stated."""
    if kind not in _KINDS:
        raise ConfigError(f"metric kind must be one of {', '.join(_KINDS)}; got {kind!r}")

    def decorate(func: Callable[[OverlapCounts], float]) -> Callable[[OverlapCounts], float]:
        if name in METRICS:
            raise ConfigError(f"overlap metric {name!r} is already registered")
        METRICS[name] = OverlapMetric(name, func, bool(symmetric), float(identity),
                                      (float(bounds[0]), float(bounds[1])), kind, description)
        return func

    return decorate


def get_metric(name: str) -> OverlapMetric:
    """The registered metric ``name``; raises :class:`ConfigError` listing the valid names."""
    try:
        return METRICS[name]
    except KeyError:
        raise ConfigError(f"unknown overlap metric {name!r}; choose one of: {', '.join(list_metrics())}") from None


def list_metrics() -> list[str]:
    """Names of the registered overlap metrics, sorted."""
    return sorted(METRICS)


def _ratio(num: float, den: float, both_empty: bool) -> float:
    """``num / den``; for 0/0, 1.0 when both masks are empty (identical sets) and NaN otherwise."""
    if den:
        return num / den
    return 1.0 if both_empty else float("nan")


def _both_empty(c: OverlapCounts) -> bool:
    return c.kept_a == 0 and c.kept_b == 0


@register_metric("jaccard_overlap", symmetric=True, identity=1.0, bounds=(0.0, 1.0), kind="similarity",
                 description="|A∩B| / |A∪B| (intersection over union); 1 when both masks are empty")
def jaccard_overlap(c: OverlapCounts) -> float:
    return _ratio(c.intersection, c.union, _both_empty(c))


@register_metric("jaccard_distance", symmetric=True, identity=0.0, bounds=(0.0, 1.0), kind="distance",
                 description="1 − |A∩B| / |A∪B|; 0 when both masks are empty")
def jaccard_distance(c: OverlapCounts) -> float:
    return 1.0 - jaccard_overlap(c)


@register_metric("dice_overlap", symmetric=True, identity=1.0, bounds=(0.0, 1.0), kind="similarity",
                 description="2|A∩B| / (|A| + |B|); 1 when both masks are empty")
def dice_overlap(c: OverlapCounts) -> float:
    return _ratio(2 * c.intersection, c.kept_a + c.kept_b, _both_empty(c))


@register_metric("overlap_coefficient", symmetric=True, identity=1.0, bounds=(0.0, 1.0), kind="similarity",
                 description="|A∩B| / min(|A|, |B|) (Szymkiewicz–Simpson); 1 when both masks are empty, NaN "
                 "when only one is")
def overlap_coefficient(c: OverlapCounts) -> float:
    return _ratio(c.intersection, min(c.kept_a, c.kept_b), _both_empty(c))


@register_metric("cosine_overlap", symmetric=True, identity=1.0, bounds=(0.0, 1.0), kind="similarity",
                 description="|A∩B| / sqrt(|A|·|B|) (Ochiai, the cosine of the 0/1 vectors); 1 when both "
                 "masks are empty, NaN when only one is")
def cosine_overlap(c: OverlapCounts) -> float:
    return _ratio(c.intersection, math.sqrt(c.kept_a * c.kept_b), _both_empty(c))


@register_metric("hamming_distance", symmetric=True, identity=0.0, bounds=(0.0, 1.0), kind="distance",
                 description="|A Δ B| / N, the fraction of the N weights on which the masks differ "
                 "(scipy.spatial.distance.hamming); 0 for an empty tensor")
def hamming_distance(c: OverlapCounts) -> float:
    return c.hamming / c.size if c.size else 0.0


@register_metric("containment", symmetric=False, identity=1.0, bounds=(0.0, 1.0), kind="similarity",
                 description="|A∩B| / |A|, the fraction of A's kept weights that B also keeps; 1 when both "
                 "masks are empty, NaN when only A is")
def containment(c: OverlapCounts) -> float:
    return _ratio(c.intersection, c.kept_a, _both_empty(c))


# ----------------------------------------------------------------------------------------------------------
# Chance level


def expected_intersection(kept_a: Any, kept_b: Any, size: Any) -> float:
    """Expected ``|A ∩ B|`` of two independent uniformly random masks with the given kept counts.

    Parameters
    ----------
    kept_a, kept_b, size : int or sequence of int
        Kept counts and sizes of one tensor, or sequences over the layers of a model.

    Returns
    -------
    float
        ``Σ_l kept_a[l] · kept_b[l] / size[l]`` (a single term for scalars; empty tensors contribute 0).
        Per layer, never from the pooled density.
    """
    a, b, n = (np.atleast_1d(np.asarray(x, dtype=np.float64)) for x in (kept_a, kept_b, size))
    with np.errstate(invalid="ignore", divide="ignore"):
        terms = np.where(n > 0, a * b / np.where(n > 0, n, 1), 0.0)
    return float(terms.sum())


def intersection_variance(kept_a: Any, kept_b: Any, size: Any) -> float:
    """Variance of ``|A ∩ B|`` under the chance model (summed over layers for sequences).

    Per layer the hypergeometric variance ``kept_b · p (1 − p) (N − kept_b) / (N − 1)`` with ``p = kept_a / N``
    (0 for N ≤ 1); layers are independent, so variances add.
    """
    a, b, n = (np.atleast_1d(np.asarray(x, dtype=np.float64)) for x in (kept_a, kept_b, size))
    ok = n > 1
    n1 = np.where(ok, n, 2.0)
    p = a / n1
    terms = np.where(ok, b * p * (1 - p) * (n1 - b) / (n1 - 1), 0.0)
    return float(terms.sum())


def expected_jaccard(kept_a: Any, kept_b: Any, size: Any) -> float:
    """Chance-level Jaccard: ``E|A∩B| / (|A| + |B| − E|A∩B|)``, the ratio of the expected intersection to the
    expected union.

    Parameters
    ----------
    kept_a, kept_b, size : int or sequence of int
        One tensor, or sequences over the layers of a model; then ``E|A∩B|`` is summed over layers
        (:func:`expected_intersection`) and ``|A|``, ``|B|`` are model totals.

    Returns
    -------
    float
        In [0, 1]; 1.0 when both masks are empty. For equal densities d this is ``d / (2 − d)``.

    Notes
    -----
    This is a ratio of expectations, not the expectation of the ratio ``E[|A∩B| / |A∪B|]``. The union is
    ``|A| + |B| − X`` with X the random intersection, so the Jaccard is the convex function
    ``f(X) = X / (|A| + |B| − X)`` and, by Jensen, ``f(E X) ≤ E f(X)``. The difference is about
    ``f''(E X) Var(X) / 2`` = ``(|A| + |B|) Var(X) / (|A| + |B| − E X)³``: relative size 1e-3 for N = 1000 at
    densities 0.2 and 0.3, falling as 1/N (tests check it against simulation).
    """
    e = expected_intersection(kept_a, kept_b, size)
    total = float(np.sum(np.asarray(kept_a, dtype=np.float64)) + np.sum(np.asarray(kept_b, dtype=np.float64)))
    union = total - e
    return e / union if union > 0 else 1.0


def intersection_pvalue(intersection: int, kept_a: int, kept_b: int, size: int) -> float:
    """One-sided p-value ``P(X ≥ intersection)`` for one tensor, X ~ Hypergeometric(N, kept_a, kept_b).

    Exact (``scipy.stats.hypergeom.sf``). Small values mean the masks share more weights than two uniformly
    random masks with the same kept counts would.
    """
    from scipy.stats import hypergeom

    if intersection <= max(0, kept_a + kept_b - size):
        return 1.0
    return float(min(1.0, max(0.0, hypergeom.sf(int(intersection) - 1, int(size), int(kept_a), int(kept_b)))))


#: Probabilities below this are dropped from the pmfs that are convolved (what is dropped sums to less than
#: 1e-135). Products of two kept values stay above 1e-300, clear of the subnormal numbers that make
#: floating-point arithmetic some 100x slower.
_TINY = 1e-150
#: Exact p-values are resolved down to this; smaller ones are reported as computed but mean only "< 1e-130".
PVALUE_FLOOR = 1e-130
#: Most multiply-adds (estimated, conservatively) that ``method="auto"`` spends on the exact convolution;
#: numpy.convolve does about 1e10 per second, so this is a fraction of a second.
EXACT_WORK_LIMIT = 3e9
PVALUE_METHODS = ("auto", "convolution", "normal")


def _window_bounds(kept_a: int, kept_b: int, size: int) -> tuple[int, int]:
    """The values ``[start, stop]`` outside which a Hypergeometric(size, kept_a, kept_b) pmf is negligible.

    ``mean ± (28 σ_b + 250)`` with σ_b² = kept_b·p(1−p), p = kept_a/size, clipped to the support. Bernstein's
    inequality (valid for sampling without replacement, Hoeffding 1963 §6) bounds each tail beyond by
    exp(−375) < 1e-162.
    """
    lo, hi = max(0, kept_a + kept_b - size), min(kept_a, kept_b)
    if hi <= lo or size <= 0:
        return lo, lo
    mean = kept_a * kept_b / size
    p = kept_a / size
    half = 28.0 * math.sqrt(kept_b * p * (1 - p)) + 250.0
    return max(lo, math.floor(mean - half)), min(hi, math.ceil(mean + half))


def _hypergeom_window(kept_a: int, kept_b: int, size: int) -> tuple[int, np.ndarray]:
    """``(first value, pmf)`` of Hypergeometric(size, kept_a, kept_b) over the values where it is ≥ 1e-150.

    The pmf is built from its ratio ``pmf(x+1)/pmf(x) = (a − x)(b − x) / ((x + 1)(N − a − b + x + 1))`` in log
    space (cumulative sums), on :func:`_window_bounds` only, and normalised to sum 1: the mass outside the
    window is below 1e-300, so the normalisation is exact in double precision.
    """
    start, stop = _window_bounds(kept_a, kept_b, size)
    if stop <= start:
        return start, np.ones(1)
    x = np.arange(start, stop, dtype=np.float64)
    logr = (np.log(kept_a - x) + np.log(kept_b - x)) - (np.log(x + 1) + np.log(size - kept_a - kept_b + x + 1))
    logp = np.empty(x.size + 1)
    logp[0] = 0.0
    np.cumsum(logr, out=logp[1:])
    pmf = np.exp(logp - logp.max())
    pmf /= pmf.sum()
    keep = np.flatnonzero(pmf >= _TINY)  # one contiguous run: the pmf is log-concave
    return start + int(keep[0]), pmf[keep[0]: keep[-1] + 1]


def _convolution_work(kept_a: Sequence[int], kept_b: Sequence[int], size: Sequence[int]) -> float:
    """Estimated multiply-adds of :func:`hypergeometric_sum_pmf`, from the window lengths alone.

    Windows are convolved longest first; the running result is trimmed to about ±27 of its standard deviations
    (where a normal density falls below 1e-150), estimated here as 56 σ + 500.
    """
    layers = []
    for a, b, n in zip(kept_a, kept_b, size):
        start, stop = _window_bounds(int(a), int(b), int(n))
        layers.append((stop - start + 1, intersection_variance(a, b, n)))
    work, acc, var = 0.0, 1, 0.0
    for length, v in sorted(layers, reverse=True):
        work += float(acc) * length
        var += v
        acc = min(acc + length - 1, max(acc, length, int(56 * math.sqrt(var)) + 500))
    return work


def hypergeometric_sum_pmf(kept_a: Sequence[int], kept_b: Sequence[int], size: Sequence[int]
                           ) -> tuple[int, np.ndarray]:
    """Distribution of ``Σ_l X_l`` for independent ``X_l ~ Hypergeometric(size[l], kept_a[l], kept_b[l])``.

    Returns
    -------
    first : int
        The value of ``pmf[0]``.
    pmf : ndarray of float64
        ``pmf[i] = P(Σ X_l = first + i)``, over the values where it is ≥ 1e-150 (everything else sums to less
        than 1e-135). Computed by direct (``numpy.convolve``) convolution of the per-layer pmfs, longest first,
        trimming the running result after each step. Direct convolution only adds products of non-negative
        numbers, so it keeps relative precision in the tails (an FFT would not).
    """
    first, acc = 0, np.ones(1)
    windows = sorted((_hypergeom_window(int(a), int(b), int(n)) for a, b, n in zip(kept_a, kept_b, size)),
                     key=lambda w: -w[1].size)
    for start, pmf in windows:
        acc = np.convolve(acc, pmf) if pmf.size > 1 else acc * pmf[0]
        first += start
        keep = np.flatnonzero(acc >= _TINY)
        first += int(keep[0])
        acc = acc[keep[0]: keep[-1] + 1]
    return first, acc / acc.sum()


def total_intersection_pvalue(intersection: int, kept_a: Sequence[int], kept_b: Sequence[int],
                              size: Sequence[int], *, method: str = "auto") -> tuple[float, str]:
    """One-sided p-value of a model's total intersection under the per-layer chance model.

    ``P(Σ_l X_l ≥ intersection)`` with independent ``X_l ~ Hypergeometric(size[l], kept_a[l], kept_b[l])``: each
    layer keeps its observed counts, placed uniformly at random.

    Parameters
    ----------
    intersection : int
        Observed ``Σ_l |A_l ∩ B_l|``.
    kept_a, kept_b, size : sequence of int
        Per-layer kept counts and sizes.
    method : {"auto", "convolution", "normal"}
        ``"convolution"``: exact — the per-layer pmfs are convolved directly (:func:`hypergeometric_sum_pmf`)
        and the tail summed. Absolute error below 1e-135 plus rounding (relative 1e-8 or better): p-values are
        exact down to :data:`PVALUE_FLOOR` = 1e-130, and smaller ones only say "< 1e-130" (0.0 beyond the
        computed range). ``"normal"``: ``P(Z ≥ (I − 0.5 − μ) / σ)`` with μ and σ² the sums of the per-layer
        hypergeometric means and variances (a continuity-corrected normal approximation; good near the centre,
        indicative only for p far below 1e-6). ``"auto"`` convolves when the estimated cost is at most
        :data:`EXACT_WORK_LIMIT` multiply-adds (under a second), which covers the LeNets, Conv-2/4/6 and
        ResNet-20/56 at any density, VGG-11/16 at density ≤ 0.2 and VGG-19 at ≤ 0.05, and approximates otherwise
        (e.g. VGG-16 at density 0.5, or 1e9-weight masks), where the sum of many large layers is close to normal.

    Returns
    -------
    p_value : float
    method : str
        ``"convolution"`` or ``"normal"``, the method used.
    """
    if method not in PVALUE_METHODS:
        raise ConfigError(f"unknown p-value method {method!r}; choose one of: {', '.join(PVALUE_METHODS)}")
    ka, kb, n = (np.asarray(x, dtype=np.int64).reshape(-1) for x in (kept_a, kept_b, size))
    if method == "auto":
        method = "convolution" if _convolution_work(ka, kb, n) <= EXACT_WORK_LIMIT else "normal"
    if method == "convolution":
        first, pmf = hypergeometric_sum_pmf(ka, kb, n)
        i = int(intersection) - first
        if i <= 0:
            return 1.0, method
        if i >= pmf.size:
            return 0.0, method
        return float(min(1.0, pmf[i:].sum())), method
    from scipy.stats import norm

    mu = expected_intersection(ka, kb, n)
    sd = math.sqrt(intersection_variance(ka, kb, n))
    if sd == 0:
        return (1.0 if intersection <= mu + 1e-9 else 0.0), method
    return float(norm.sf((int(intersection) - 0.5 - mu) / sd)), method


# ----------------------------------------------------------------------------------------------------------
# Tables

#: Columns of :func:`overlap_table`, after the caller's label columns and before the extra metrics.
OVERLAP_COLUMNS = ["layer", "size", "kept_a", "kept_b", "density_a", "density_b", "intersection", "union",
                   "hamming", "jaccard", "dice", "overlap_coefficient", "expected_intersection",
                   "expected_jaccard", "ratio", "p_value", "p_method"]


def _row(layer: str, c: OverlapCounts, expected: float, expected_j: float, p: float, p_method: str,
         metrics: Sequence[OverlapMetric]) -> dict[str, Any]:
    row = {
        "layer": layer, "size": c.size, "kept_a": c.kept_a, "kept_b": c.kept_b,
        "density_a": c.kept_a / c.size if c.size else float("nan"),
        "density_b": c.kept_b / c.size if c.size else float("nan"),
        "intersection": c.intersection, "union": c.union, "hamming": c.hamming,
        "jaccard": jaccard_overlap(c), "dice": dice_overlap(c), "overlap_coefficient": overlap_coefficient(c),
        "expected_intersection": expected, "expected_jaccard": expected_j,
        "ratio": c.intersection / expected if expected > 0 else float("nan"),
        "p_value": p, "p_method": p_method,
    }
    for m in metrics:
        row[m.name] = m(c)
    return row


def overlap_table(counts: Mapping[str, OverlapCounts], *, metrics: Sequence[str] = (),
                  pvalue_method: str = "auto", total: bool = True, **columns: Any) -> pd.DataFrame:
    """Tidy overlap table of one pair of masks: one row per layer, then the model total.

    Parameters
    ----------
    counts : mapping of str to OverlapCounts
        Per-layer counts, in model order (from :func:`overlap_counts` or :func:`packed_overlap_counts`; the
        layer-at-a-time path for tickets larger than memory).
    metrics : sequence of str
        Extra registry metrics (:data:`METRICS`) to add as columns, e.g. ``["containment", "hamming_distance"]``.
    pvalue_method : {"auto", "convolution", "normal"}
        How the total row's p-value is computed (:func:`total_intersection_pvalue`). Layer rows are always exact.
    total : bool
        Append the row ``layer == "total"`` (counts summed over layers; chance from per-layer sums).
    **columns
        Constant leading columns, e.g. ``a="run1.h5", b="run2.h5", level_a=3, level_b=3``.

    Returns
    -------
    pandas.DataFrame
        Columns: the ``columns`` keys, then ``layer``; ``size`` (N); ``kept_a``, ``kept_b``; ``density_a``,
        ``density_b`` (kept / N); ``intersection`` (|A∩B|); ``union`` (|A∪B|); ``hamming`` (|A Δ B|, a count);
        ``jaccard`` (|A∩B|/|A∪B|); ``dice`` (2|A∩B|/(|A|+|B|)); ``overlap_coefficient`` (|A∩B|/min(|A|,|B|));
        ``expected_intersection`` and ``expected_jaccard`` (chance level, see the module docstring); ``ratio``
        (observed / expected intersection, NaN when 0 is expected); ``p_value`` (one-sided P(X ≥ observed)
        under chance); ``p_method`` (``"hypergeometric"`` for layers, ``"convolution"`` or ``"normal"`` for the
        total); then one column per extra metric.
    """
    extra = [get_metric(m) for m in metrics]
    rows = []
    for layer, c in counts.items():
        e = expected_intersection(c.kept_a, c.kept_b, c.size)
        rows.append(_row(layer, c, e, expected_jaccard(c.kept_a, c.kept_b, c.size),
                         intersection_pvalue(c.intersection, c.kept_a, c.kept_b, c.size), "hypergeometric", extra))
    if total and counts:
        cs = list(counts.values())
        ka, kb, n = [c.kept_a for c in cs], [c.kept_b for c in cs], [c.size for c in cs]
        t = total_counts(cs)
        p, how = total_intersection_pvalue(t.intersection, ka, kb, n, method=pvalue_method)
        rows.append(_row("total", t, expected_intersection(ka, kb, n), expected_jaccard(ka, kb, n), p, how, extra))
    frame = pd.DataFrame(rows, columns=OVERLAP_COLUMNS + [m.name for m in extra])
    for i, (key, value) in enumerate(columns.items()):
        frame.insert(i, key, value)
    return frame


def _check_same_layers(masks: Mapping[str, Mapping[str, np.ndarray]]) -> list[str]:
    labels = list(masks)
    ref = masks[labels[0]]
    names = list(ref)
    for label in labels[1:]:
        other = masks[label]
        for name in names:
            if name not in other:
                raise ConfigError(f"{label!r} has no mask for layer {name!r}, which {labels[0]!r} has")
            if np.shape(other[name]) != np.shape(ref[name]):
                raise ConfigError(f"layer {name!r} has shape {np.shape(other[name])} in {label!r} but "
                                  f"{np.shape(ref[name])} in {labels[0]!r}")
        extra = [n for n in other if n not in ref]
        if extra:
            raise ConfigError(f"{label!r} has a mask for layer {extra[0]!r}, which {labels[0]!r} lacks")
    return names


def pairwise_overlap(masks: Mapping[str, Mapping[str, np.ndarray]], *, metrics: Sequence[str] = (),
                     pvalue_method: str = "auto") -> pd.DataFrame:
    """Overlap of every pair of several masks of one model, per layer and in total.

    Parameters
    ----------
    masks : mapping of str to mask
        ``{label: {layer name: bool array}}``, at least two; every mask must have the same layers and shapes.
    metrics, pvalue_method
        As for :func:`overlap_table`.

    Returns
    -------
    pandas.DataFrame
        :func:`overlap_table`'s columns preceded by ``a`` and ``b`` (the labels), for each pair ``a < b`` in the
        given order.
    """
    labels = list(masks)
    if len(labels) < 2:
        raise ConfigError(f"overlap needs at least two masks; got {len(labels)}")
    names = _check_same_layers(masks)
    frames = []
    packed = {label: {n: pack(np.asarray(masks[label][n])) for n in names} for label in labels}
    sizes = {n: int(np.size(masks[labels[0]][n])) for n in names}
    for la, lb in combinations(labels, 2):
        counts = {n: packed_overlap_counts(packed[la][n], packed[lb][n], sizes[n]) for n in names}
        frames.append(overlap_table(counts, metrics=metrics, pvalue_method=pvalue_method, a=la, b=lb))
    return pd.concat(frames, ignore_index=True)


def mask_overlap(masks_a: Mapping[str, np.ndarray], masks_b: Mapping[str, np.ndarray], *,
            labels: tuple[str, str] = ("a", "b"), metrics: Sequence[str] = (), pvalue_method: str = "auto"
            ) -> pd.DataFrame:
    """Overlap of two masks of one model: :func:`pairwise_overlap` of ``{labels[0]: masks_a, labels[1]: masks_b}``."""
    if labels[0] == labels[1]:
        raise ConfigError(f"the two labels must differ; got {labels}")
    return pairwise_overlap({labels[0]: masks_a, labels[1]: masks_b}, metrics=metrics, pvalue_method=pvalue_method)


def jaccard_matrix(frame: pd.DataFrame, value: str = "jaccard", layer: str = "total") -> pd.DataFrame:
    """Square symmetric matrix of one column of a pairwise overlap frame (default: the total Jaccard).

    Rows and columns are the labels in ``a``/``b`` in order of appearance; the diagonal is the metric's value of
    a mask with itself (1 for Jaccard).
    """
    rows = frame[frame["layer"] == layer]
    labels = list(dict.fromkeys(list(rows["a"]) + list(rows["b"])))
    diag = 1.0 if value in ("jaccard", "dice", "overlap_coefficient") else float("nan")
    if value in METRICS:
        diag = METRICS[value].identity
    out = pd.DataFrame(np.full((len(labels), len(labels)), np.nan), index=labels, columns=labels)
    for label in labels:
        out.loc[label, label] = diag
    for a, b, v in zip(rows["a"], rows["b"], rows[value]):
        out.loc[a, b] = v
        out.loc[b, a] = v
    return out
