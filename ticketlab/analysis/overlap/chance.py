"""The chance level of mask overlap: expected intersection and Jaccard, and p-values, under random placement.

The null model keeps, in every layer, the same number of weights as each observed mask, placed uniformly at
random and independently; a layer's intersection is then hypergeometric and a model's the sum of independent
per-layer hypergeometrics (see :mod:`ticketlab.analysis.overlap` for the formulas and their caveats).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

from ticketlab.registry import Registry

__all__ = ["expected_intersection", "intersection_variance", "expected_jaccard", "intersection_pvalue",
           "hypergeometric_sum_pmf", "total_intersection_pvalue", "PVALUE_FLOOR", "EXACT_WORK_LIMIT",
           "PVALUE_METHODS"]


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
    ka, kb, n = (np.asarray(x, dtype=np.int64).reshape(-1) for x in (kept_a, kept_b, size))
    return PVALUE_METHODS.get(method)(int(intersection), ka, kb, n)


#: How the p-value of a model's total intersection is computed: each entry is
#: ``func(intersection, kept_a, kept_b, size) -> (p_value, method used)`` on per-layer int64 arrays.
PVALUE_METHODS: Registry[Callable[..., tuple[float, str]]] = Registry("p-value method")


@PVALUE_METHODS.register("auto")
def _auto_pvalue(intersection: int, ka: np.ndarray, kb: np.ndarray, n: np.ndarray) -> tuple[float, str]:
    """The exact convolution when it costs at most :data:`EXACT_WORK_LIMIT` multiply-adds, else the normal
    approximation."""
    method = "convolution" if _convolution_work(ka, kb, n) <= EXACT_WORK_LIMIT else "normal"
    return PVALUE_METHODS.get(method)(intersection, ka, kb, n)


@PVALUE_METHODS.register("convolution")
def _convolution_pvalue(intersection: int, ka: np.ndarray, kb: np.ndarray, n: np.ndarray) -> tuple[float, str]:
    """Exact: the tail of the convolved per-layer pmfs (:func:`hypergeometric_sum_pmf`)."""
    first, pmf = hypergeometric_sum_pmf(ka, kb, n)
    i = intersection - first
    if i <= 0:
        return 1.0, "convolution"
    if i >= pmf.size:
        return 0.0, "convolution"
    return float(min(1.0, pmf[i:].sum())), "convolution"


@PVALUE_METHODS.register("normal")
def _normal_pvalue(intersection: int, ka: np.ndarray, kb: np.ndarray, n: np.ndarray) -> tuple[float, str]:
    """Continuity-corrected normal approximation with the summed per-layer means and variances."""
    from scipy.stats import norm

    mu = expected_intersection(ka, kb, n)
    sd = math.sqrt(intersection_variance(ka, kb, n))
    if sd == 0:
        return (1.0 if intersection <= mu + 1e-9 else 0.0), "normal"
    return float(norm.sf((intersection - 0.5 - mu) / sd)), "normal"
