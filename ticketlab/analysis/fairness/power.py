"""The power of Welch's t-test from a few runs: what a test with n runs per side can detect, and how many runs a
stated effect needs.

A population statistic computed from two or three seeds per side is mostly noise: Welch's test with 2 runs per
side has 1 to 2 degrees of freedom, so its critical value at α = 0.05 is 4.3 to 12.7 standard errors. These
functions say so in numbers, from the seed-to-seed standard deviations observed in each population.

Method: the power of Welch's test itself, for normal samples with standard deviations ``sd_a``, ``sd_b`` and
``n_a``, ``n_b`` runs. The difference of sample means is N(delta, se²) with ``se² = sd_a²/n_a + sd_b²/n_b`` and
is independent of the sample variances, and each sample variance is ``sd² · χ²_{n−1} / (n − 1)``. Given the
sample variances, the test rejects when ``|difference| > t_{1−alpha/2, df̂} · sê`` (``sê`` and the
Welch–Satterthwaite ``df̂`` computed from the sample variances, as ``scipy.stats.ttest_ind(equal_var=False)``
does), a normal probability; :func:`welch_power` averages it over a 128 × 128 grid of quantiles of the two
χ² distributions. The usual noncentral-t shortcut, which fixes ``df̂`` at its population value, overstates the
power badly for few runs (at 2 runs per side it promises 80% where the test has 48%); this does not.
:func:`minimum_detectable_effect` inverts the power for ``delta`` and :func:`runs_needed` for the number of runs
per side. ``tests/test_fairness.py`` checks all three against a simulation of Welch's test.

The standard deviations given are in practice *estimates* from the same few runs, so with 2 or 3 runs the power
figures are themselves rough: they say what such data cannot show, not what they do.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize, stats

from ticketlab.errors import ConfigError

__all__ = ["POWER", "GRID", "welch_dof", "welch_power", "minimum_detectable_effect", "runs_needed"]

#: The power the caveats and the documentation state (Cohen's convention).
POWER = 0.8

#: The largest number of runs per side :func:`runs_needed` searches.
MAX_RUNS = 100_000

#: Quantiles per sample variance in the quadrature of :func:`welch_power` (64 already agrees with 1,024 to 4
#: digits).
GRID = 128


def _check(alpha: float, power: float | None = None) -> None:
    if not 0 < alpha < 1:
        raise ConfigError(f"The 'alpha' parameter must be a float in (0, 1). Got {alpha} instead.")
    if power is not None and not 0 < power < 1:
        raise ConfigError(f"The 'power' parameter must be a float in (0, 1). Got {power} instead.")


def _se_dof(sd_a: float, sd_b: float, n_a: float, n_b: float) -> tuple[float, float]:
    va, vb = float(sd_a) ** 2 / n_a, float(sd_b) ** 2 / n_b
    se = math.sqrt(va + vb)
    if se == 0:
        return 0.0, math.nan
    return se, (va + vb) ** 2 / (va ** 2 / (n_a - 1) + vb ** 2 / (n_b - 1))


def welch_dof(sd_a: float, sd_b: float, n_a: int, n_b: int) -> float:
    """Welch–Satterthwaite degrees of freedom for standard deviations ``sd_a``, ``sd_b`` and ``n_a``, ``n_b`` runs
    (NaN when both standard deviations are 0)."""
    return _se_dof(sd_a, sd_b, n_a, n_b)[1]


def _valid(sd_a: float, sd_b: float, n_a: int, n_b: int) -> bool:
    """Whether a power can be computed: finite deviations, not both 0; refuses fewer than 2 runs a side."""
    if min(n_a, n_b) < 2:
        raise ConfigError(f"Welch's test needs at least 2 runs per population; got {n_a} and {n_b}")
    return bool(np.isfinite(sd_a) and np.isfinite(sd_b) and (sd_a != 0 or sd_b != 0))


def _thresholds(sd_a: float, sd_b: float, n_a: int, n_b: int, alpha: float) -> tuple[np.ndarray, float]:
    """The rejection threshold ``t_crit(df̂) · sê`` on the quadrature grid of sample variances, and the true se."""
    u = (np.arange(GRID) + 0.5) / GRID
    qa = stats.chi2.ppf(u, n_a - 1) / (n_a - 1)
    qb = stats.chi2.ppf(u, n_b - 1) / (n_b - 1)
    va = (float(sd_a) ** 2 / n_a) * qa[:, None]
    vb = (float(sd_b) ** 2 / n_b) * qb[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        dof = (va + vb) ** 2 / (va ** 2 / (n_a - 1) + vb ** 2 / (n_b - 1))
    threshold = stats.t.ppf(1 - alpha / 2, dof) * np.sqrt(va + vb)
    return threshold.ravel(), _se_dof(sd_a, sd_b, n_a, n_b)[0]


def _power(delta: float, threshold: np.ndarray, se: float) -> float:
    d = abs(float(delta))
    return float(np.mean(stats.norm.sf((threshold - d) / se) + stats.norm.cdf((-threshold - d) / se)))


def welch_power(delta: float, sd_a: float, sd_b: float, n_a: int, n_b: int, alpha: float = 0.05) -> float:
    """Probability that Welch's two-sided test at level ``alpha`` rejects when the means differ by ``delta``.

    Parameters
    ----------
    delta : float
        The true difference of means (any sign; in the units of the samples, e.g. a fraction of accuracy).
    sd_a, sd_b : float
        Standard deviations of the two populations (seed to seed).
    n_a, n_b : int
        Runs in each population, each ≥ 2.
    alpha : float
        Significance level, in (0, 1).

    Returns
    -------
    float
        In [0, 1] (about ``alpha`` for ``delta = 0``); NaN when both standard deviations are 0 or one is not
        finite (no power can be estimated from samples that do not vary).
    """
    _check(alpha)
    if not _valid(sd_a, sd_b, n_a, n_b) or not np.isfinite(delta):
        return math.nan
    return _power(delta, *_thresholds(sd_a, sd_b, n_a, n_b, alpha))


def minimum_detectable_effect(sd_a: float, sd_b: float, n_a: int, n_b: int, alpha: float = 0.05,
                              power: float = POWER) -> float:
    """The smallest difference of means Welch's test at level ``alpha`` detects with probability ``power``.

    Solves :func:`welch_power` ``(delta, ...) = power`` for ``delta ≥ 0``; NaN when both standard deviations are 0
    or one is not finite.
    """
    _check(alpha, power)
    if not _valid(sd_a, sd_b, n_a, n_b):
        return math.nan
    threshold, se = _thresholds(sd_a, sd_b, n_a, n_b, alpha)
    hi = se
    while _power(hi, threshold, se) < power:  # bracket it: 2 runs a side need ~ 10 se at α = 0.05
        hi *= 2
    return float(optimize.brentq(lambda d: _power(d, threshold, se) - power, 0.0, hi, xtol=se * 1e-9))


def runs_needed(delta: float, sd_a: float, sd_b: float, alpha: float = 0.05, power: float = POWER) -> float:
    """The fewest runs per side (the same number in each population) for Welch's test at level ``alpha`` to detect
    a difference of ``delta`` with probability ``power``, given the standard deviations ``sd_a`` and ``sd_b``.

    Returns
    -------
    float
        An integer ≥ 2 as a float; ``inf`` beyond :data:`MAX_RUNS` or for ``delta = 0``; NaN when both standard
        deviations are 0 or one is not finite.
    """
    _check(alpha, power)
    if not _valid(sd_a, sd_b, 2, 2) or not np.isfinite(delta):
        return math.nan
    if delta == 0:
        return math.inf

    def enough(n: int) -> bool:
        return welch_power(delta, sd_a, sd_b, n, n, alpha) >= power

    # the z-test with known variances is the most powerful, so its runs are a lower bound to start from
    z = (stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)) ** 2 * (float(sd_a) ** 2 + float(sd_b) ** 2)
    start = max(2, int(math.ceil(z / float(delta) ** 2)) - 1)
    if start > MAX_RUNS:
        return math.inf
    if enough(start):  # not expected; search down to 2
        lo, hi = 1, start
    else:
        lo, step = start, 1
        hi = start + step
        while not enough(hi):  # power grows with n: widen the step, then bisect
            lo, step = hi, step * 2
            hi = lo + step
            if hi > MAX_RUNS:
                return math.inf
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if enough(mid) else (mid, hi)
    return float(max(hi, 2))
