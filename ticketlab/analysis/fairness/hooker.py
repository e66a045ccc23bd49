"""Hooker et al.'s per-class test: Welch's t-test of (class recall − accuracy), dense against pruned models."""

from __future__ import annotations

import warnings
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from ticketlab.analysis.fairness.inputs import as_matrix, class_names_or_indices
from ticketlab.analysis.fairness.power import POWER, minimum_detectable_effect, runs_needed, welch_power
from ticketlab.errors import ConfigError
from ticketlab.registry import Registry

__all__ = ["SHIFTS", "HOOKER_COLUMNS", "EFFECT", "MIN_RUNS", "hooker_test", "welch_caveat"]

#: What is subtracted from class recall in Hooker et al.'s test: ``shift(class_recall (R, C), accuracy (R,))``
#: returns recall minus the shift, per model and class.
SHIFTS: Registry[Callable[[np.ndarray, np.ndarray], np.ndarray]] = Registry("shift")
SHIFTS.register("population", lambda cls, acc: cls - acc.mean())  # the population's mean accuracy (Hooker's code)
SHIFTS.register("model", lambda cls, acc: cls - acc[:, None])       # each model's own accuracy

HOOKER_COLUMNS = ["level", "class", "class_name", "n_dense", "n_pruned", "dense_recall", "pruned_recall",
                  "dense_gap", "pruned_gap", "change", "t", "dof", "p_value", "impacted", "sd_dense", "sd_pruned",
                  "mde", "power", "runs_needed", "caveat"]

#: The change in (recall − accuracy) the power columns are stated for: 0.01, one percentage point.
EFFECT = 0.01

#: Fewer runs than this on either side always draws a caveat: the two variances then rest on 1 degree of freedom
#: each and Welch's df can fall to 1.
MIN_RUNS = 3


def welch_caveat(n_dense: int, n_pruned: int, dof: float, mde: float, power: float, needed: float, *,
                 alpha: float = 0.05, effect: float = EFFECT, target: float = POWER) -> str:
    """The caveat of one Welch test, ``""`` when there is none.

    There is one when either side has fewer than :data:`MIN_RUNS` runs, when Welch's df is below 3, or when the
    test has less than ``target`` power to detect a change of ``effect``; it states the runs, the df, the
    smallest change detected with ``target`` power (``mde``) and the runs per side ``effect`` needs.
    """
    few = min(n_dense, n_pruned) < MIN_RUNS
    low_dof = bool(np.isfinite(dof) and dof < 3)
    weak = bool(np.isfinite(power) and power < target)
    if not (few or low_dof or weak):
        return ""
    head = f"{n_dense} dense + {n_pruned} pruned runs" + (f", Welch df {dof:.1f}" if np.isfinite(dof) else "")
    if not np.isfinite(mde):
        return head + ": the runs do not vary, so the test's power cannot be estimated"
    need = "over 100,000" if np.isinf(needed) else f"~{int(needed):,}"
    return (f"{head}: {target:.0%} power at alpha={alpha:g} only for changes >= {mde:.3f}; a change of {effect:g} "
            f"needs {need} runs per side" + (" (by sds from so few runs, themselves rough)" if few else ""))


def hooker_test(
    dense_class_accuracy: np.ndarray,
    dense_accuracy: np.ndarray,
    pruned_class_accuracy: np.ndarray,
    pruned_accuracy: np.ndarray,
    *,
    level: int | None = None,
    class_names: Sequence[str] | None = None,
    alpha: float = 0.05,
    shift: str = "population",
    effect: float = EFFECT,
    power: float = POWER,
) -> pd.DataFrame:
    """Welch's t-test per class between dense and pruned populations of (class recall − accuracy).

    Parameters
    ----------
    dense_class_accuracy : ndarray of shape (R0, C)
        Recall of each class for each of R0 dense models (level 0 of each run).
    dense_accuracy : ndarray of shape (R0,)
        Overall accuracy of each dense model.
    pruned_class_accuracy : ndarray of shape (R1, C)
        Recall of each class for each of R1 pruned models (the chosen level of each run).
    pruned_accuracy : ndarray of shape (R1,)
        Overall accuracy of each pruned model.
    level : int, optional
        The pruned level, copied into the ``level`` column.
    class_names : sequence of str, optional
    alpha : float
        Significance level: a class is ``impacted`` when ``p_value <= alpha`` (Hooker et al. use 0.05).
    shift : {"population", "model"}
        What is subtracted from each recall: the mean accuracy of the model's population (Hooker et al.'s
        code) or the model's own accuracy.
    effect : float
        The change in (recall − accuracy) the ``power`` and ``runs_needed`` columns are stated for (default
        0.01, one percentage point).
    power : float
        The power the ``mde`` and ``runs_needed`` columns are stated for (default 0.8).

    Returns
    -------
    DataFrame
        One row per class, columns :data:`HOOKER_COLUMNS`: ``dense_recall``/``pruned_recall`` = mean recall of
        the population; ``dense_gap``/``pruned_gap`` = mean of (recall − shift); ``change = pruned_gap −
        dense_gap`` (negative: the class lost more than the model); ``t``, ``p_value`` from
        ``scipy.stats.ttest_ind(pruned, dense, equal_var=False)`` (so t has the sign of ``change``), ``dof`` the
        Welch–Satterthwaite degrees of freedom. A class whose samples are constant in both populations, or
        contain NaN (absent from the test set), has NaN ``t`` and ``p_value`` and is not flagged.

        How much such a test can show (:mod:`ticketlab.analysis.fairness.power`, from the observed seed-to-seed
        standard deviations ``sd_dense``/``sd_pruned`` of (recall − shift)): ``mde`` is the smallest change
        detected with probability ``power`` at ``alpha``, ``power`` the probability of detecting a change of
        ``effect``, ``runs_needed`` the runs per side a change of ``effect`` needs for that power, and ``caveat``
        (:func:`welch_caveat`) a sentence saying so when the runs are too few, the df below 3 or the power below
        the target; ``""`` otherwise. An ``impacted`` class with a caveat is a weak finding.
    """
    shifted = SHIFTS.get(shift)
    if not 0 < alpha < 1:
        raise ConfigError(f"The 'alpha' parameter must be a float in (0, 1). Got {alpha} instead.")
    if not 0 < power < 1:
        raise ConfigError(f"The 'power' parameter must be a float in (0, 1). Got {power} instead.")
    if not (np.isfinite(effect) and effect > 0):
        raise ConfigError(f"The 'effect' parameter must be a positive number. Got {effect} instead.")
    d_cls = as_matrix("dense_class_accuracy", dense_class_accuracy, 2)
    p_cls = as_matrix("pruned_class_accuracy", pruned_class_accuracy, 2)
    d_acc = np.asarray(dense_accuracy, dtype=np.float64).reshape(-1)
    p_acc = np.asarray(pruned_accuracy, dtype=np.float64).reshape(-1)
    if d_cls.shape[1] != p_cls.shape[1]:
        raise ConfigError(f"dense and pruned populations have {d_cls.shape[1]} and {p_cls.shape[1]} classes")
    if d_acc.size != len(d_cls) or p_acc.size != len(p_cls):
        raise ConfigError("give one overall accuracy per model: "
                          f"{len(d_cls)} dense models with {d_acc.size} accuracies, "
                          f"{len(p_cls)} pruned models with {p_acc.size}")
    if len(d_cls) < 2 or len(p_cls) < 2:
        raise ConfigError(f"Welch's t-test needs at least 2 models per population; got {len(d_cls)} dense and "
                          f"{len(p_cls)} pruned (give several runs, e.g. one per seed)")
    n_classes = d_cls.shape[1]
    names = class_names_or_indices(n_classes, class_names)

    d_gap, p_gap = shifted(d_cls, d_acc), shifted(p_cls, p_acc)
    out = []
    for c in range(n_classes):
        a, b = p_gap[:, c], d_gap[:, c]
        if np.isfinite(a).all() and np.isfinite(b).all() and (np.ptp(a) > 0 or np.ptp(b) > 0):
            with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
                # scipy warns when a population's values agree to ~15 digits (e.g. the dense models' recall
                # gaps); the statistic is still the right one for the samples given
                warnings.filterwarnings("ignore", "Precision loss", RuntimeWarning)
                res = stats.ttest_ind(a, b, equal_var=False)
            t, p, dof = float(res.statistic), float(res.pvalue), float(res.df)
        else:
            t = p = dof = np.nan
        sd_p, sd_d = (float(np.std(x, ddof=1)) if np.isfinite(x).all() else np.nan for x in (a, b))
        mde = minimum_detectable_effect(sd_p, sd_d, len(a), len(b), alpha, power)
        at_effect = welch_power(effect, sd_p, sd_d, len(a), len(b), alpha)
        needed = runs_needed(effect, sd_p, sd_d, alpha, power)
        absent = not (np.isfinite(a).all() and np.isfinite(b).all())
        out.append({
            "level": level, "class": c, "class_name": names[c], "n_dense": len(b), "n_pruned": len(a),
            "dense_recall": d_cls[:, c].mean(), "pruned_recall": p_cls[:, c].mean(),
            "dense_gap": b.mean(), "pruned_gap": a.mean(), "change": a.mean() - b.mean(),
            "t": t, "dof": dof, "p_value": p, "impacted": bool(p <= alpha),  # NaN <= alpha is False
            "sd_dense": sd_d, "sd_pruned": sd_p, "mde": mde, "power": at_effect, "runs_needed": needed,
            "caveat": "" if absent else welch_caveat(len(b), len(a), dof, mde, at_effect, needed, alpha=alpha,
                                                     effect=effect, target=power),
        })
    return pd.DataFrame(out, columns=HOOKER_COLUMNS)
