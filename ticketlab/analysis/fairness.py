"""Per-class effects of pruning: accuracy drops, the intensification fit, Hooker et al.'s test and PIEs.

Pruning can cost some classes much more than the overall accuracy suggests (Paganini 2020, *Prune
Responsibly*, arXiv:2009.09936, documents such per-class imbalances; Hooker et al. 2019, *What Do Compressed
Deep Neural Networks Forget?*, arXiv:1911.05248). This module measures that from test-set evaluations. Every
function takes arrays and returns a tidy :class:`pandas.DataFrame` (one row per observation); none opens a
file. ``ticketlab fairness`` reads ticket files and calls :func:`fairness_analysis`.

Definitions (all accuracies are fractions in [0, 1], never percentages):

- *class accuracy* of class c = recall of c = correct predictions of c / test examples of c
  (``Evaluation.per_class_accuracy``); *accuracy* = overall top-1 accuracy.
- *drop* = dense class accuracy (level 0) − class accuracy at the level; positive means the class lost
  accuracy. *relative drop* = drop / dense class accuracy. *overall drop* = dense accuracy − accuracy.
  *excess drop* = drop − overall drop: how much more (> 0) or less (< 0) the class lost than the model did.
- *intensification fit* (a ticketlab design choice, not a definition taken from Paganini 2020, whose text we
  could not read): per level, ordinary least squares of the class accuracy a'_c on the dense class accuracy a_c
  across classes, a'_c = intercept + slope · a_c. slope = 1 is a uniform shift; slope > 1 means classes that
  were weak before pruning lose more (the "intensification effect" hypothesis of Good et al. 2022). Standard
  errors are those of :func:`scipy.stats.linregress`; confidence intervals use Student's t with C − 2 degrees
  of freedom (C = classes with a finite accuracy at both levels).
- *Hooker et al.'s test*, as coded in their ``per_class_accuracy/gen_tstatistic.py``: for each class, the
  dense sample is {recall_c − accuracy shift} over the dense models (level 0 of every run), the pruned sample
  the same over the pruned models; Welch's unequal-variance t-test compares them; p ≤ alpha flags the class as
  *disparately impacted*, i.e. it moved differently from the overall accuracy. Hooker's script subtracts the
  population's mean top-1 accuracy (``shift="population"``, the default); ``shift="model"`` subtracts each
  model's own accuracy instead.
- *pruning-identified exemplar* (PIE, Hooker et al.): a test example whose modal (most frequent) predicted
  label over the pruned models differs from its modal label over the dense models. Ties between labels are
  broken by the **largest** label, as Hooker's ``pie_dataset_gen/aggregate_predictions.py`` does
  (``predictions.mode().max()``); ``ties="smallest"`` takes the smallest instead.

Examples
--------
>>> drops = class_drops(per_class, accuracy, levels=[0, 1, 2])                # doctest: +SKIP
>>> fit = intensification_fit(per_class[0], per_class[1:], levels=[1, 2])     # doctest: +SKIP
"""

from __future__ import annotations

import warnings

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from ticketlab.errors import ConfigError

#: How ties between equally frequent labels are broken when taking a modal prediction.
TIES = ("largest", "smallest")
#: What is subtracted from class recall in Hooker et al.'s test.
SHIFTS = ("population", "model")
#: Sections :func:`fairness_analysis` can return, in order.
SECTIONS = ("drops", "fit", "hooker", "pies", "pie_examples")

DROP_COLUMNS = ["run", "seed", "level", "density", "class", "class_name", "class_accuracy",
                "dense_class_accuracy", "drop", "relative_drop", "accuracy", "dense_accuracy", "overall_drop",
                "overall_relative_drop", "excess_drop"]
FIT_COLUMNS = ["run", "seed", "level", "density", "n_classes", "slope", "slope_stderr", "slope_ci_low",
               "slope_ci_high", "intercept", "intercept_stderr", "intercept_ci_low", "intercept_ci_high", "r",
               "p_slope_1"]
HOOKER_COLUMNS = ["level", "class", "class_name", "n_dense", "n_pruned", "dense_recall", "pruned_recall",
                  "dense_gap", "pruned_gap", "change", "t", "dof", "p_value", "impacted"]
PIE_EXAMPLE_COLUMNS = ["level", "example", "label", "class_name", "dense_modal", "pruned_modal", "dense_votes",
                       "pruned_votes", "pie", "dense_modal_correct", "pruned_modal_correct"]
PIE_COUNT_COLUMNS = ["level", "class", "class_name", "examples", "pies", "pie_fraction", "pies_pruned_correct",
                     "pies_dense_correct"]


# -- helpers --------------------------------------------------------------------------------------------------


def _names(num_classes: int, class_names: Sequence[str] | None) -> list[str]:
    if class_names is None or len(class_names) == 0:
        return [str(c) for c in range(num_classes)]
    if len(class_names) != num_classes:
        raise ConfigError(f"{len(class_names)} class names for {num_classes} classes; give one name per class")
    return [str(n) for n in class_names]


def _matrix(name: str, value: np.ndarray, ndim: int) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == ndim - 1:
        arr = arr[None]
    if arr.ndim != ndim:
        raise ConfigError(f"{name} must be {ndim}-D; got shape {arr.shape}")
    return arr


def _choice(name: str, value: str, options: Sequence[str]) -> str:
    if value not in options:
        raise ConfigError(f"unknown {name} {value!r}; choose one of: {', '.join(options)}")
    return value


# -- per-class drops ------------------------------------------------------------------------------------------


def class_drops(
    class_accuracy: np.ndarray,
    accuracy: np.ndarray,
    *,
    levels: Sequence[int] | None = None,
    density: Sequence[float] | None = None,
    class_names: Sequence[str] | None = None,
    run: str | None = None,
    seed: int | None = None,
) -> pd.DataFrame:
    """Per level and class: class accuracy, its dense value, the drop, and the drop beyond the overall drop.

    Parameters
    ----------
    class_accuracy : ndarray of shape (L, C)
        Recall of each class (fraction) at each of L levels of one run; NaN for classes absent from the test set.
    accuracy : ndarray of shape (L,)
        Overall top-1 accuracy (fraction) at each level.
    levels : sequence of int, optional
        The level of each row (default ``0 .. L-1``). Level 0, the dense network, must be among them: it is the
        reference for every drop.
    density : sequence of float, optional
        Kept fraction of the masked weights at each level (copied into the ``density`` column).
    class_names : sequence of str, optional
        One per class; default the class indices as strings.
    run, seed : optional
        Labels copied into every row.

    Returns
    -------
    DataFrame
        One row per (level, class), columns :data:`DROP_COLUMNS`: ``drop = dense_class_accuracy -
        class_accuracy``, ``relative_drop = drop / dense_class_accuracy`` (NaN when the dense accuracy is 0),
        ``overall_drop = dense_accuracy - accuracy``, ``overall_relative_drop = overall_drop / dense_accuracy``,
        ``excess_drop = drop - overall_drop``.
    """
    per_class = _matrix("class_accuracy", class_accuracy, 2)
    acc = np.asarray(accuracy, dtype=np.float64).reshape(-1)
    n_levels, n_classes = per_class.shape
    lv = np.arange(n_levels) if levels is None else np.asarray(levels, dtype=np.int64).reshape(-1)
    if acc.size != n_levels or lv.size != n_levels:
        raise ConfigError(f"class_accuracy has {n_levels} levels (rows) but accuracy has {acc.size} values and "
                          f"levels {lv.size}; give one of each per level")
    dens = np.full(n_levels, np.nan) if density is None else np.asarray(density, dtype=np.float64).reshape(-1)
    if dens.size != n_levels:
        raise ConfigError(f"density has {dens.size} values for {n_levels} levels")
    dense_rows = np.flatnonzero(lv == 0)
    if dense_rows.size != 1:
        raise ConfigError(f"levels must contain level 0 (the dense network) exactly once; got {lv.tolist()}")
    names = _names(n_classes, class_names)
    d = dense_rows[0]
    dense_class, dense_acc = per_class[d], acc[d]
    drop = dense_class[None, :] - per_class
    overall = dense_acc - acc
    with np.errstate(invalid="ignore", divide="ignore"):
        relative = np.where(dense_class[None, :] != 0, drop / dense_class[None, :], np.nan)
        overall_rel = overall / dense_acc if dense_acc != 0 else np.full(n_levels, np.nan)
    rows = {
        "run": run, "seed": seed,
        "level": np.repeat(lv, n_classes),
        "density": np.repeat(dens, n_classes),
        "class": np.tile(np.arange(n_classes), n_levels),
        "class_name": np.tile(np.asarray(names, dtype=object), n_levels),
        "class_accuracy": per_class.reshape(-1),
        "dense_class_accuracy": np.tile(dense_class, n_levels),
        "drop": drop.reshape(-1),
        "relative_drop": relative.reshape(-1),
        "accuracy": np.repeat(acc, n_classes),
        "dense_accuracy": dense_acc,
        "overall_drop": np.repeat(overall, n_classes),
        "overall_relative_drop": np.repeat(overall_rel, n_classes),
        "excess_drop": (drop - overall[:, None]).reshape(-1),
    }
    return pd.DataFrame(rows, columns=DROP_COLUMNS)


# -- intensification fit --------------------------------------------------------------------------------------


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
    ys = _matrix("class_accuracy", class_accuracy, 2)
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


# -- Hooker et al.'s per-class test ---------------------------------------------------------------------------


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

    Returns
    -------
    DataFrame
        One row per class, columns :data:`HOOKER_COLUMNS`: ``dense_recall``/``pruned_recall`` = mean recall of
        the population; ``dense_gap``/``pruned_gap`` = mean of (recall − shift); ``change = pruned_gap −
        dense_gap`` (negative: the class lost more than the model); ``t``, ``p_value`` from
        ``scipy.stats.ttest_ind(pruned, dense, equal_var=False)`` (so t has the sign of ``change``), ``dof`` the
        Welch–Satterthwaite degrees of freedom. A class whose samples are constant in both populations, or
        contain NaN (absent from the test set), has NaN ``t`` and ``p_value`` and is not flagged.
    """
    _choice("shift", shift, SHIFTS)
    if not 0 < alpha < 1:
        raise ConfigError(f"The 'alpha' parameter must be a float in (0, 1). Got {alpha} instead.")
    d_cls = _matrix("dense_class_accuracy", dense_class_accuracy, 2)
    p_cls = _matrix("pruned_class_accuracy", pruned_class_accuracy, 2)
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
    names = _names(n_classes, class_names)

    def shifted(cls: np.ndarray, acc: np.ndarray) -> np.ndarray:
        return cls - (acc.mean() if shift == "population" else acc[:, None])

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
        out.append({
            "level": level, "class": c, "class_name": names[c], "n_dense": len(b), "n_pruned": len(a),
            "dense_recall": d_cls[:, c].mean(), "pruned_recall": p_cls[:, c].mean(),
            "dense_gap": b.mean(), "pruned_gap": a.mean(), "change": a.mean() - b.mean(),
            "t": t, "dof": dof, "p_value": p, "impacted": bool(p <= alpha),  # NaN <= alpha is False
        })
    return pd.DataFrame(out, columns=HOOKER_COLUMNS)


# -- pruning-identified exemplars -----------------------------------------------------------------------------


def vote_counts(predictions: np.ndarray, num_classes: int | None = None) -> np.ndarray:
    """How many models predict each label for each example.

    Parameters
    ----------
    predictions : ndarray of shape (R, N), int
        Predicted label of each of N examples by each of R models.
    num_classes : int, optional
        Default: the largest prediction + 1.

    Returns
    -------
    ndarray of shape (N, C), int64
    """
    preds = np.asarray(predictions)
    if preds.ndim == 1:
        preds = preds[None]
    if preds.ndim != 2 or preds.shape[0] == 0:
        raise ConfigError(f"predictions must be 2-D (models, examples) with at least one model; got {preds.shape}")
    preds = preds.astype(np.int64)
    if preds.size and preds.min() < 0:
        raise ConfigError(f"predictions must be class indices >= 0; got {preds.min()}")
    c = int(preds.max()) + 1 if num_classes is None else int(num_classes)
    if preds.size and preds.max() >= c:
        raise ConfigError(f"predictions must lie in [0, {c}); got a maximum of {preds.max()}")
    n = preds.shape[1]
    flat = (np.arange(n)[None, :] * c + preds).reshape(-1)
    return np.bincount(flat, minlength=n * c).reshape(n, c)


def modal_predictions(predictions: np.ndarray, num_classes: int | None = None, ties: str = "largest") -> np.ndarray:
    """The most frequent predicted label of each example over a population of models.

    Parameters
    ----------
    predictions : ndarray of shape (R, N), int
    num_classes : int, optional
    ties : {"largest", "smallest"}
        Which of several equally frequent labels wins: the largest (as Hooker et al.'s
        ``mode().max()``) or the smallest.

    Returns
    -------
    ndarray of shape (N,), int64
    """
    _choice("ties", ties, TIES)
    counts = vote_counts(predictions, num_classes)
    if ties == "smallest":
        return counts.argmax(axis=1)
    return counts.shape[1] - 1 - counts[:, ::-1].argmax(axis=1)


def pruning_identified_exemplars(
    dense_predictions: np.ndarray,
    pruned_predictions: np.ndarray,
    labels: np.ndarray,
    *,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    level: int | None = None,
    ties: str = "largest",
) -> pd.DataFrame:
    """Per test example: the modal label of the dense and of the pruned population, and whether it is a PIE.

    Parameters
    ----------
    dense_predictions : ndarray of shape (R0, N), int
        Predictions of each dense model on the N test examples.
    pruned_predictions : ndarray of shape (R1, N), int
        Predictions of each pruned model on the same examples, in the same order.
    labels : ndarray of shape (N,), int
        True label of each example.
    num_classes : int, optional
        Default: one more than the largest label or prediction.
    class_names : sequence of str, optional
    level : int, optional
        The pruned level, copied into the ``level`` column.
    ties : {"largest", "smallest"}
        Tie-breaking of the modal label (see :func:`modal_predictions`).

    Returns
    -------
    DataFrame
        One row per example, columns :data:`PIE_EXAMPLE_COLUMNS`; ``pie`` is ``dense_modal != pruned_modal``;
        ``dense_votes``/``pruned_votes`` are the fractions of the population that predict the modal label.
    """
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    dense = np.asarray(dense_predictions)
    pruned = np.asarray(pruned_predictions)
    dense, pruned = (dense[None] if dense.ndim == 1 else dense), (pruned[None] if pruned.ndim == 1 else pruned)
    for what, p in (("dense_predictions", dense), ("pruned_predictions", pruned)):
        if p.ndim != 2 or p.shape[1] != labels.size:
            raise ConfigError(f"{what} must have shape (models, {labels.size}) to match the {labels.size} labels; "
                              f"got {p.shape}")
    if num_classes is None:
        num_classes = int(max(labels.max(initial=-1), dense.max(initial=-1), pruned.max(initial=-1))) + 1
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ConfigError(f"labels must lie in [0, {num_classes}); got values in [{labels.min()}, {labels.max()}]")
    names = _names(num_classes, class_names)
    d_counts, p_counts = vote_counts(dense, num_classes), vote_counts(pruned, num_classes)
    d_mode, p_mode = modal_predictions(dense, num_classes, ties), modal_predictions(pruned, num_classes, ties)
    idx = np.arange(labels.size)
    return pd.DataFrame({
        "level": level, "example": idx, "label": labels,
        "class_name": np.asarray(names, dtype=object)[labels] if labels.size else np.array([], dtype=object),
        "dense_modal": d_mode, "pruned_modal": p_mode,
        "dense_votes": d_counts[idx, d_mode] / dense.shape[0],
        "pruned_votes": p_counts[idx, p_mode] / pruned.shape[0],
        "pie": d_mode != p_mode,
        "dense_modal_correct": d_mode == labels, "pruned_modal_correct": p_mode == labels,
    }, columns=PIE_EXAMPLE_COLUMNS)


def pie_counts(examples: pd.DataFrame, num_classes: int, class_names: Sequence[str] | None = None) -> pd.DataFrame:
    """PIEs per true class, from the per-example frame of :func:`pruning_identified_exemplars`.

    Returns
    -------
    DataFrame
        One row per class, columns :data:`PIE_COUNT_COLUMNS`: ``examples`` (test examples of the class),
        ``pies``, ``pie_fraction = pies / examples`` (NaN for absent classes), ``pies_pruned_correct`` (PIEs whose
        pruned modal label is the true label) and ``pies_dense_correct``.
    """
    names = _names(num_classes, class_names)
    labels = examples["label"].to_numpy(np.int64)
    pie = examples["pie"].to_numpy(bool)

    def count(sel: np.ndarray) -> np.ndarray:
        return np.bincount(labels[sel], minlength=num_classes)[:num_classes]

    total = count(np.ones_like(pie))
    pies = count(pie)
    levels = examples["level"].dropna().unique()
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(total > 0, pies / np.maximum(total, 1), np.nan)
    return pd.DataFrame({
        "level": levels[0] if len(levels) == 1 else None, "class": np.arange(num_classes), "class_name": names,
        "examples": total, "pies": pies, "pie_fraction": frac,
        "pies_pruned_correct": count(pie & examples["pruned_modal_correct"].to_numpy(bool)),
        "pies_dense_correct": count(pie & examples["dense_modal_correct"].to_numpy(bool)),
    }, columns=PIE_COUNT_COLUMNS)


# -- everything at once -----------------------------------------------------------------------------------------


def check_same_test_set(labels: Sequence[np.ndarray | None], names: Sequence[str]) -> np.ndarray:
    """The common test labels of several runs; raises naming the first run whose test set differs.

    Population comparisons (Hooker et al.'s test, PIEs) match predictions example by example, so every run
    must have been evaluated on the same test examples in the same order; equal label vectors are the check.
    """
    if not labels:
        raise ConfigError("no runs given")
    ref = labels[0]
    for name, lab in zip(names, labels):
        if lab is None:
            raise ConfigError(f"{name} records no test labels, so its test set cannot be compared with the other "
                              "runs'; several runs can only be compared when each records its test labels")
    ref = np.asarray(ref)
    for name, lab in zip(names[1:], labels[1:]):
        lab = np.asarray(lab)
        if lab.shape != ref.shape:
            raise ConfigError(f"{name} and {names[0]} were evaluated on different test sets ({lab.size:,} vs "
                              f"{ref.size:,} examples); compare only runs that share one test set")
        diff = np.flatnonzero(lab != ref)
        if diff.size:
            raise ConfigError(f"{name} and {names[0]} were evaluated on different test sets: their labels differ "
                              f"at {diff.size:,} of {ref.size:,} examples (first at example {diff[0]}); compare "
                              "only runs that share one test set")
    return ref


@dataclass
class FairnessRun:
    """One run's evaluations, as arrays (what :func:`fairness_analysis` needs of a ticket file).

    Attributes
    ----------
    name : str
        A label for the run (e.g. the file name).
    levels : sequence of int, length L
        Levels present, including 0 (the dense network).
    class_accuracy : ndarray of shape (L, C)
        Recall of each class at each level.
    accuracy : ndarray of shape (L,)
        Overall accuracy at each level.
    density : ndarray of shape (L,), optional
        Kept fraction of the masked weights at each level.
    predictions : mapping of int to ndarray of shape (N,)
        Test-set predictions of the levels needed for PIEs (0 and the chosen level).
    seed : int, optional
    """

    name: str
    levels: Sequence[int]
    class_accuracy: np.ndarray
    accuracy: np.ndarray
    density: np.ndarray | None = None
    predictions: Mapping[int, np.ndarray] = field(default_factory=dict)
    seed: int | None = None

    def row(self, level: int) -> int:
        levels = list(self.levels)
        if level not in levels:
            raise ConfigError(f"run {self.name} has no level {level}; levels present: "
                              f"{', '.join(map(str, levels)) or 'none'}")
        return levels.index(level)


def fairness_analysis(
    runs: Sequence[FairnessRun],
    level: int,
    *,
    labels: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    alpha: float = 0.05,
    shift: str = "population",
    ties: str = "largest",
    sections: Sequence[str] = SECTIONS,
) -> dict[str, pd.DataFrame]:
    """All fairness sections for one or several runs of one method.

    Parameters
    ----------
    runs : sequence of FairnessRun
        One per run (seed); all with the same classes.
    level : int
        The pruned level compared with level 0 by Hooker et al.'s test and PIEs.
    labels : ndarray of shape (N,), optional
        The shared test labels (needed for PIEs).
    class_names, alpha, shift, ties
        See :func:`hooker_test` and :func:`modal_predictions`.
    sections : sequence of str
        Which of :data:`SECTIONS` to compute. ``drops`` covers every level of every run; ``fit`` every level
        except 0. ``hooker``, ``pies`` and ``pie_examples`` need at least two runs and are left out otherwise;
        ``pies`` and ``pie_examples`` also need ``labels`` and each run's predictions at 0 and ``level``.

    Returns
    -------
    dict of str to DataFrame
        Keyed by section, in the order of :data:`SECTIONS`.
    """
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        raise ConfigError(f"unknown section {unknown[0]!r}; choose from: {', '.join(SECTIONS)}")
    if not runs:
        raise ConfigError("no runs given")
    n_classes = {np.asarray(r.class_accuracy).shape[-1] for r in runs}
    if len(n_classes) != 1:
        raise ConfigError(f"runs have different numbers of classes: {sorted(n_classes)}")
    (n_classes,) = n_classes
    out: dict[str, pd.DataFrame] = {}
    if "drops" in sections:
        out["drops"] = pd.concat([class_drops(r.class_accuracy, r.accuracy, levels=r.levels, density=r.density,
                                              class_names=class_names, run=r.name, seed=r.seed) for r in runs],
                                 ignore_index=True)
    if "fit" in sections:
        fits = []
        for r in runs:
            lv = np.asarray(r.levels)
            keep = lv != 0
            dens = None if r.density is None else np.asarray(r.density)[keep]
            fits.append(intensification_fit(np.asarray(r.class_accuracy)[r.row(0)],
                                            np.asarray(r.class_accuracy)[keep], levels=lv[keep], density=dens,
                                            run=r.name, seed=r.seed))
        out["fit"] = pd.concat(fits, ignore_index=True)
    if len(runs) < 2:
        return out
    if "hooker" in sections:
        d = [r.row(0) for r in runs]
        p = [r.row(level) for r in runs]
        out["hooker"] = hooker_test(
            np.stack([np.asarray(r.class_accuracy)[i] for r, i in zip(runs, d)]),
            np.array([np.asarray(r.accuracy)[i] for r, i in zip(runs, d)]),
            np.stack([np.asarray(r.class_accuracy)[i] for r, i in zip(runs, p)]),
            np.array([np.asarray(r.accuracy)[i] for r, i in zip(runs, p)]),
            level=level, class_names=class_names, alpha=alpha, shift=shift)
    if {"pies", "pie_examples"} & set(sections):
        if labels is None:
            raise ConfigError("PIEs need the test labels; pass labels=")
        missing = [(r.name, lv) for r in runs for lv in (0, level) if lv not in r.predictions]
        if missing:
            raise ConfigError(f"run {missing[0][0]} has no predictions for level {missing[0][1]}; PIEs need the "
                              "test-set predictions of level 0 and of the chosen level of every run")
        examples = pruning_identified_exemplars(
            np.stack([r.predictions[0] for r in runs]), np.stack([r.predictions[level] for r in runs]), labels,
            num_classes=n_classes, class_names=class_names, level=level, ties=ties)
        if "pies" in sections:
            out["pies"] = pie_counts(examples, n_classes, class_names)
        if "pie_examples" in sections:
            out["pie_examples"] = examples
    return {k: out[k] for k in SECTIONS if k in out}


__all__ = ["TIES", "SHIFTS", "SECTIONS", "class_drops", "intensification_fit", "hooker_test", "vote_counts",
           "modal_predictions", "pruning_identified_exemplars", "pie_counts", "check_same_test_set",
           "FairnessRun", "fairness_analysis"]
