"""The intensification fit: per level, OLS of class accuracy after pruning on dense class accuracy."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from ticketlab.analysis.fairness.inputs import as_matrix
from ticketlab.errors import ConfigError

__all__ = ["FIT_COLUMNS", "intensification_fit"]

FIT_COLUMNS = ["run", "seed", "level", "density", "n_classes", "slope", "slope_stderr", "slope_ci_low",
               "slope_ci_high", "intercept", "intercept_stderr", "intercept_ci_low", "intercept_ci_high", "r",
               "p_slope_1"]


def intensification_fit(
    dense_class_accuracy: np.ndarray,
    class_accuracy: np.ndarray,
    *,
    levels: Sequence[int] | None = None,
    density: Sequence[float] | None = None,
    confidence: float = 0.95,
    run: str | None = None,
    seed: int | None = None,
) -> pd.DataFrame:
    """Per level, OLS of class accuracy after pruning on dense class accuracy across classes.

    Parameters
    ----------
    dense_class_accuracy : ndarray of shape (C,)
        Recall of each class of the dense network (level 0).
    class_accuracy : ndarray of shape (L, C) or (C,)
        Recall of each class at each of L pruned levels.
    levels : sequence of int, optional
        The level of each row (default ``1 .. L``).
    density : sequence of float, optional
        Kept fraction at each level (copied into the ``density`` column).
    confidence : float
        Two-sided confidence level of the intervals, in (0, 1).
    run, seed : optional
        Labels copied into every row.

    Returns
    -------
    DataFrame
        One row per level, columns :data:`FIT_COLUMNS`. ``slope``, ``intercept``, their standard errors and
        ``r`` come from :func:`scipy.stats.linregress` over the ``n_classes`` classes whose accuracy is finite at
        both levels; ``*_ci_low``/``*_ci_high`` = estimate ∓ t_{(1+confidence)/2, n-2} · stderr; ``p_slope_1`` is
        the two-sided p-value of t = (slope − 1) / slope_stderr with n − 2 degrees of freedom (H0: slope = 1,
        a uniform shift). With fewer than 2 usable classes (or all dense accuracies equal) every estimate is
        NaN; with 2 the intervals and p-value are NaN; with a perfect fit (stderr 0) ``p_slope_1`` is NaN.
    """
    if not 0 < confidence < 1:
        raise ConfigError(f"The 'confidence' parameter must be a float in (0, 1). Got {confidence} instead.")
    x_all = np.asarray(dense_class_accuracy, dtype=np.float64).reshape(-1)
    ys = as_matrix("class_accuracy", class_accuracy, 2)
    if ys.shape[1] != x_all.size:
        raise ConfigError(f"class_accuracy has {ys.shape[1]} classes but dense_class_accuracy has {x_all.size}")
    lv = np.arange(1, len(ys) + 1) if levels is None else np.asarray(levels, dtype=np.int64).reshape(-1)
    dens = np.full(len(ys), np.nan) if density is None else np.asarray(density, dtype=np.float64).reshape(-1)
    if lv.size != len(ys) or dens.size != len(ys):
        raise ConfigError(f"class_accuracy has {len(ys)} levels (rows) but levels has {lv.size} values and "
                          f"density {dens.size}")
    out = []
    for level, d, y_all in zip(lv, dens, ys):
        ok = np.isfinite(x_all) & np.isfinite(y_all)
        x, y = x_all[ok], y_all[ok]
        n = int(ok.sum())
        row = {"run": run, "seed": seed, "level": int(level), "density": float(d), "n_classes": n}
        row.update({k: np.nan for k in FIT_COLUMNS[5:]})
        if n >= 2 and np.ptp(x) > 0:
            res = stats.linregress(x, y)
            row.update(slope=res.slope, intercept=res.intercept, r=res.rvalue, slope_stderr=res.stderr,
                       intercept_stderr=res.intercept_stderr)
            if n >= 3:
                q = stats.t.ppf(0.5 + confidence / 2, n - 2)
                row.update(slope_ci_low=res.slope - q * res.stderr, slope_ci_high=res.slope + q * res.stderr,
                           intercept_ci_low=res.intercept - q * res.intercept_stderr,
                           intercept_ci_high=res.intercept + q * res.intercept_stderr)
                if res.stderr > 0:
                    row["p_slope_1"] = 2 * stats.t.sf(abs((res.slope - 1) / res.stderr), n - 2)
        out.append(row)
    return pd.DataFrame(out, columns=FIT_COLUMNS)
