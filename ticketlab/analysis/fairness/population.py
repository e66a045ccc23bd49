"""Every fairness analysis of one population of runs at once: :class:`FairnessRun` and :func:`fairness_analysis`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ticketlab.analysis.fairness.drops import class_drops
from ticketlab.analysis.fairness.fit import dense_reliability, intensification_fit, noise_null_slope
from ticketlab.analysis.fairness.hooker import EFFECT, hooker_test
from ticketlab.analysis.fairness.pies import pie_counts, pruning_identified_exemplars
from ticketlab.errors import ConfigError

__all__ = ["SECTIONS", "check_same_test_set", "FairnessRun", "fit_noise", "fairness_analysis"]

#: Sections :func:`fairness_analysis` can return, in order.
SECTIONS = ("drops", "fit", "hooker", "pies", "pie_examples")


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


def fit_noise(runs: Sequence[FairnessRun]) -> tuple[float | None, dict[int, tuple[float, int]] | None]:
    """``(reliability, {level: (null_slope, runs)})`` of a population's intensification fits; ``(None, None)`` for
    one run.

    :func:`~ticketlab.analysis.fairness.fit.dense_reliability` of the runs' dense class accuracies, and per
    pruned level :func:`~ticketlab.analysis.fairness.fit.noise_null_slope` over the runs that have the level
    (how many is the second number).
    """
    if len(runs) < 2:
        return None, None
    widths = {np.asarray(r.class_accuracy).shape[-1] for r in runs}
    if len(widths) > 1:
        raise ConfigError(f"fit_noise: the runs have different numbers of classes ({sorted(widths)}); a "
                          "population's runs share one test set")
    dense = np.stack([np.asarray(r.class_accuracy, dtype=np.float64)[r.row(0)] for r in runs])
    reliability = dense_reliability(dense)
    nulls = {}
    for level in sorted({int(v) for r in runs for v in r.levels} - {0}):
        have = [level in list(r.levels) for r in runs]
        at = np.stack([np.asarray(r.class_accuracy, dtype=np.float64)[r.row(level)] if h
                       else np.full(dense.shape[1], np.nan) for r, h in zip(runs, have)])
        nulls[level] = (noise_null_slope(dense, at), sum(have))
    return reliability, nulls


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
    effect: float = EFFECT,
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
    class_names, alpha, shift, ties, effect
        See :func:`hooker_test` and :func:`modal_predictions`.
    sections : sequence of str
        Which of :data:`SECTIONS` to compute. ``drops`` covers every level of every run; ``fit`` every level
        except 0, its ``reliability``, ``null_slope`` and ``p_slope_null`` estimated from all the runs
        (:func:`fit_noise`; so give the runs of one method, a population). ``hooker``, ``pies`` and
        ``pie_examples`` need at least two runs and are left out otherwise; ``pies`` and ``pie_examples`` also
        need ``labels`` and each run's predictions at 0 and ``level``.

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
        reliability, nulls = fit_noise(runs)
        fits = []
        for r in runs:
            lv = np.asarray(r.levels)
            keep = lv != 0
            dens = None if r.density is None else np.asarray(r.density)[keep]
            fits.append(intensification_fit(
                np.asarray(r.class_accuracy)[r.row(0)], np.asarray(r.class_accuracy)[keep], levels=lv[keep],
                density=dens, run=r.name, seed=r.seed, reliability=reliability,
                null_slope=None if nulls is None else [nulls[int(v)][0] for v in lv[keep]],
                runs=None if nulls is None else [nulls[int(v)][1] for v in lv[keep]]))
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
            level=level, class_names=class_names, alpha=alpha, shift=shift, effect=effect)
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
            out["pies"] = pie_counts(examples, n_classes, class_names, ties)
        if "pie_examples" in sections:
            out["pie_examples"] = examples
    return {k: out[k] for k in SECTIONS if k in out}
