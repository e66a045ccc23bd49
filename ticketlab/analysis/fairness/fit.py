"""The intensification fit: per level, OLS of class accuracy after pruning on dense class accuracy, and what the
noise in the dense class accuracies does to its slope (:func:`dense_reliability`, :func:`noise_null_slope`)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from ticketlab.analysis.fairness.inputs import as_matrix
from ticketlab.errors import ConfigError

__all__ = ["FIT_COLUMNS", "ONE_RUN_CAVEAT", "intensification_fit", "dense_reliability", "noise_null_slope",
           "attenuation_caveat"]

FIT_COLUMNS = ["run", "seed", "level", "density", "n_classes", "slope", "slope_stderr", "slope_ci_low",
               "slope_ci_high", "intercept", "intercept_stderr", "intercept_ci_low", "intercept_ci_high", "r",
               "p_slope_1", "reliability", "null_slope", "p_slope_null", "caveat"]

#: The caveat of a fit with no other run of its method to measure the noise from.
ONE_RUN_CAVEAT = ("one run: the slope is biased towards 0 by noise in the dense class accuracies (errors in "
                  "variables), so a slope below 1 (a small p_slope_1) is no evidence of de-intensification; give "
                  ">= 2 runs of the method to estimate by how much")


def attenuation_caveat(null_slope: float | None, reliability: float = np.nan, runs: int | None = None) -> str:
    """The ``caveat`` of a fit row: how far noise in the dense class accuracies pulls a uniform shift's slope.

    ``null_slope`` ``None`` means one run (:data:`ONE_RUN_CAVEAT`); NaN, that the runs could not say by how much;
    ``runs`` is how many runs it was estimated from (2 draws "rough").
    """
    if null_slope is None:
        return ONE_RUN_CAVEAT
    if not np.isfinite(null_slope):
        return ("the slope is biased towards 0 by noise in the dense class accuracies (errors in variables), by an "
                "amount these runs cannot estimate (it needs >= 2 runs with this level and classes that differ), so "
                "a slope below 1 (a small p_slope_1) is no evidence of de-intensification")
    source = "" if runs is None else f"from {runs} runs" + (", itself rough" if runs < 3 else "")
    said = ([f"reliability {reliability:.2f}"] if np.isfinite(reliability) else []) + ([source] if source else [])
    rel = f" ({' '.join(said)})" if said else ""
    return (f"slope attenuated by noise in the dense class accuracies{rel}: a uniform shift gives about "
            f"{null_slope:.2f} here, not 1 (compare with null_slope)")


def _double_centred(m: np.ndarray) -> np.ndarray:
    """``m`` (runs × classes) minus its run means and class means (plus the grand mean): the run-by-class
    interaction, i.e. each run's own class-specific deviations."""
    return m - m.mean(axis=1, keepdims=True) - m.mean(axis=0, keepdims=True) + m.mean()


def _noise_terms(dense: np.ndarray, other: np.ndarray | None = None) -> tuple[float, float, int]:
    """``(B, N, runs)``: B = mean over runs of the across-class variance (ddof 1) of the dense class accuracies;
    N = the two-way residual mean (co)variance of dense with ``other`` (default: dense itself), over the runs and
    classes finite in every matrix; NaNs when fewer than 2 runs or 2 classes are left."""
    x = as_matrix("dense_class_accuracy", dense, 2)
    y = x if other is None else as_matrix("class_accuracy", other, 2)
    if y.shape != x.shape:
        raise ConfigError(f"dense_class_accuracy has shape {x.shape} but class_accuracy {y.shape}; give one row "
                          "(run) per run and one column per class in both")
    runs = np.isfinite(x).any(axis=1) & np.isfinite(y).any(axis=1)     # runs without the level drop out whole
    x, y = x[runs], y[runs]
    classes = np.isfinite(x).all(axis=0) & np.isfinite(y).all(axis=0)  # classes absent from a test set too
    x, y = x[:, classes], y[:, classes]
    r, c = x.shape
    if r < 2 or c < 2:
        return np.nan, np.nan, r
    between = float(x.var(axis=1, ddof=1).mean())
    noise = float((_double_centred(x) * _double_centred(y)).sum() / ((r - 1) * (c - 1)))
    return between, noise, r


def dense_reliability(dense_class_accuracy: np.ndarray) -> float:
    """The reliability of one run's dense class accuracies: the share of their across-class variance that is the
    classes' own, not noise.

    Parameters
    ----------
    dense_class_accuracy : ndarray of shape (R, C)
        Class accuracy (recall) of the dense network of each of R runs of one method (same test set). Classes
        that are NaN in any run are left out.

    Returns
    -------
    float
        ``1 − N / B``, clipped to [0, 1]: ``B`` = mean over runs of the variance across classes (ddof 1) of a
        run's dense class accuracies, which estimates var(true class accuracy) + noise; ``N`` = the two-way
        residual mean square ``Σ_rc (x_rc − x̄_r· − x̄_·c + x̄)² / ((R − 1)(C − 1))``, which estimates the noise
        part, i.e. the run-to-run variance of a class's accuracy after removing each run's overall level. Both
        are unbiased, also when the noise of different classes is correlated within a run, and a seed that lifts
        every class alike (which does not tilt the fit) does not count as noise. The OLS slope of a uniform shift
        on the observed dense accuracies is attenuated towards 0 by this factor (errors in variables) when the
        pruned network's noise is independent of its dense parent's. NaN with fewer than 2 runs or 2 classes,
        or when no run's classes differ.
    """
    between, noise, _ = _noise_terms(dense_class_accuracy)
    if not (np.isfinite(between) and between > 0):
        return np.nan
    return float(np.clip(1 - noise / between, 0.0, 1.0))


def noise_null_slope(dense_class_accuracy: np.ndarray, class_accuracy: np.ndarray) -> float:
    """The slope :func:`intensification_fit` expects at one level when pruning shifts every class alike.

    Parameters
    ----------
    dense_class_accuracy : ndarray of shape (R, C)
        Class accuracy of the dense network of each of R runs of one method.
    class_accuracy : ndarray of shape (R, C)
        Class accuracy of the same runs at one pruned level; a run that lacks the level is a row of NaN and is
        left out (with its dense row), as are classes that are NaN anywhere.

    Returns
    -------
    float
        ``1 − N_xd / B``, clipped to [0, 1], with ``B`` as in :func:`dense_reliability` and ``N_xd`` the two-way
        residual mean cross-product of the dense class accuracies x with the drops d = x − y. Under a uniform
        shift y_rc = a_c + δ_r + f_rc of true class accuracies a_c observed as x_rc = a_c + e_rc, a run's OLS
        slope of y on x has expectation ≈ (var(a) + cov(e, f)) / (var(a) + var(e)), which this estimates: it is
        :func:`dense_reliability` when the pruned network's class-specific noise f is independent of its dense
        parent's e, and 1 when the pruned network keeps its parent's quirks exactly (y = x − δ). Pruned networks
        of an IMP chain share part of their parent's noise, the more the denser they are, hence one value per
        level. NaN with fewer than 2 runs at the level or 2 classes, or when no run's classes differ.
    """
    x = as_matrix("dense_class_accuracy", dense_class_accuracy, 2)
    y = as_matrix("class_accuracy", class_accuracy, 2)
    if y.shape != x.shape:
        raise ConfigError(f"dense_class_accuracy has shape {x.shape} but class_accuracy {y.shape}; give one row "
                          "(run) per run and one column per class in both")
    between, noise, _ = _noise_terms(x, x - y)
    if not (np.isfinite(between) and between > 0):
        return np.nan
    return float(np.clip(1 - noise / between, 0.0, 1.0))


def intensification_fit(
    dense_class_accuracy: np.ndarray,
    class_accuracy: np.ndarray,
    *,
    levels: Sequence[int] | None = None,
    density: Sequence[float] | None = None,
    confidence: float = 0.95,
    run: str | None = None,
    seed: int | None = None,
    null_slope: float | Sequence[float] | None = None,
    reliability: float | None = None,
    runs: int | Sequence[int] | None = None,
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
    null_slope : float or sequence of float (one per level), optional
        The slope a uniform shift gives under the noise in the dense class accuracies
        (:func:`noise_null_slope`, estimated from several runs of the method; :func:`fairness_analysis` passes
        it). ``None``: one run, nothing to estimate it from.
    reliability : float, optional
        :func:`dense_reliability` of the runs, copied into the ``reliability`` column and the caveat.
    runs : int or sequence of int (one per level), optional
        How many runs ``null_slope`` was estimated from, stated in the caveat.

    Returns
    -------
    DataFrame
        One row per level, columns :data:`FIT_COLUMNS`. ``slope``, ``intercept``, their standard errors and
        ``r`` come from :func:`scipy.stats.linregress` over the ``n_classes`` classes whose accuracy is finite at
        both levels; ``*_ci_low``/``*_ci_high`` = estimate ∓ t_{(1+confidence)/2, n-2} · stderr; ``p_slope_1`` is
        the two-sided p-value of t = (slope − 1) / slope_stderr with n − 2 degrees of freedom (H0: slope = 1,
        a uniform shift *of noiseless accuracies*). The dense class accuracies of one run are noisy, which biases
        the OLS slope towards 0 (errors in variables): a uniform shift gives about ``null_slope``, not 1, so
        ``p_slope_1`` can reject for noise alone and a slope below 1 is no evidence of de-intensification.
        ``p_slope_null`` is the same t-test against ``null_slope`` (H0: the classes moved alike; NaN where
        ``null_slope`` is NaN) and is the one to read; ``caveat`` (:func:`attenuation_caveat`) says so on every
        row with a slope. With fewer than 2 usable classes (or all dense accuracies equal) every estimate is
        NaN; with 2 the intervals and p-values are NaN; with a perfect fit (stderr 0) the p-values are NaN.
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
    nulls: list[float | None]
    if null_slope is None:
        nulls = [None] * len(ys)
    else:
        arr = np.asarray(null_slope, dtype=np.float64).reshape(-1)
        if arr.size == 1:
            arr = np.repeat(arr, len(ys))
        if arr.size != len(ys):
            raise ConfigError(f"class_accuracy has {len(ys)} levels (rows) but null_slope has {arr.size} values; "
                              "give one per level or one for all")
        nulls = [float(v) for v in arr]
    if runs is None:
        counts = [None] * len(ys)
    else:
        arr = np.asarray(runs).reshape(-1)
        if arr.size not in (1, len(ys)):
            raise ConfigError(f"class_accuracy has {len(ys)} levels (rows) but runs has {arr.size} values; give one "
                              "per level or one for all")
        counts = [int(v) for v in np.broadcast_to(arr, (len(ys),))]
    rel = np.nan if reliability is None else float(reliability)
    out = []
    for level, d, y_all, null, count in zip(lv, dens, ys, nulls, counts):
        ok = np.isfinite(x_all) & np.isfinite(y_all)
        x, y = x_all[ok], y_all[ok]
        n = int(ok.sum())
        row = {"run": run, "seed": seed, "level": int(level), "density": float(d), "n_classes": n}
        row.update({k: np.nan for k in FIT_COLUMNS[5:]})
        row.update(reliability=rel, null_slope=np.nan if null is None else null, caveat="")
        if n >= 2 and np.ptp(x) > 0:
            res = stats.linregress(x, y)
            row.update(slope=res.slope, intercept=res.intercept, r=res.rvalue, slope_stderr=res.stderr,
                       intercept_stderr=res.intercept_stderr, caveat=attenuation_caveat(null, rel, count))
            if n >= 3:
                q = stats.t.ppf(0.5 + confidence / 2, n - 2)
                row.update(slope_ci_low=res.slope - q * res.stderr, slope_ci_high=res.slope + q * res.stderr,
                           intercept_ci_low=res.intercept - q * res.intercept_stderr,
                           intercept_ci_high=res.intercept + q * res.intercept_stderr)
                if res.stderr > 0:
                    row["p_slope_1"] = 2 * stats.t.sf(abs((res.slope - 1) / res.stderr), n - 2)
                    if null is not None and np.isfinite(null):
                        row["p_slope_null"] = 2 * stats.t.sf(abs((res.slope - null) / res.stderr), n - 2)
        out.append(row)
    return pd.DataFrame(out, columns=FIT_COLUMNS)
