"""The fairness section, written once: the report's fairness part and the page of ``ticketlab fairness --report``.

:func:`fairness_section` adds the figures and tables of one population of runs to a page; the report
(:mod:`ticketlab.report.build`) adds it once per method, and :func:`fairness_page` builds the standalone page
around it (runs, definitions, and the section with ``detail=True``: more figures, every table). The figures are
:mod:`ticketlab.plots.fairness`'s.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

import pandas as pd

from ticketlab.analysis.fairness import EFFECT
from ticketlab.plots.fairness import (class_accuracy_plot, class_drop_plot, excess_drop_plot, hooker_plot,
                                      intensification_plot, pie_plot)
from ticketlab.report.page import ReportPage

RUN_TABLE = [("run", "run"), ("seed", "seed"), ("method", "method"), ("levels", "levels"), ("level", "level"),
             ("density", "density (kept fraction)"), ("dense_accuracy", "accuracy at level 0"),
             ("accuracy", "accuracy at level")]
FIT_TABLE = [("run", "run"), ("level", "level"), ("density", "density"), ("n_classes", "classes"),
             ("slope", "slope"), ("slope_ci_low", "slope 95% low"), ("slope_ci_high", "slope 95% high"),
             ("null_slope", "null slope (uniform shift)"), ("p_slope_null", "p (slope = null slope)"),
             ("intercept", "intercept"), ("intercept_ci_low", "intercept 95% low"),
             ("intercept_ci_high", "intercept 95% high"), ("r", "r"), ("p_slope_1", "p (slope = 1)"),
             ("caveat", "caveat")]
HOOKER_TABLE = [("class", "class"), ("class_name", "name"), ("n_dense", "dense models"),
                ("n_pruned", "pruned models"), ("dense_recall", "dense recall"), ("pruned_recall", "pruned recall"),
                ("dense_gap", "dense recall − acc"), ("pruned_gap", "pruned recall − acc"), ("change", "change"),
                ("t", "t"), ("dof", "dof"), ("p_value", "p"), ("impacted", "impacted"),
                ("mde", "detectable change (80% power)"), ("power", "power at the stated change"),
                ("runs_needed", "runs needed per side"), ("caveat", "caveat")]
PIE_TABLE = [("class", "class"), ("class_name", "name"), ("examples", "examples"), ("pies", "PIEs"),
             ("pie_fraction", "PIE fraction"), ("pies_pruned_correct", "PIEs pruned-correct"),
             ("pies_dense_correct", "PIEs dense-correct"), ("pies_tied", "PIEs on a tie"), ("caveat", "caveat")]
_DROP_MEANS = ["dense_class_accuracy", "class_accuracy", "drop", "relative_drop", "overall_drop", "excess_drop"]


def _drop_table(page: ReportPage, drops: pd.DataFrame, level: int, runs: int) -> None:
    at = drops[drops["level"] == level].groupby(["class", "class_name"], sort=True)[_DROP_MEANS].mean().reset_index()
    named = [str(c) for c in at["class"]] != [str(n) for n in at["class_name"]]
    page.table(at, [("class", "class")] + ([("class_name", "name")] if named else []) + [
                   ("dense_class_accuracy", "dense accuracy"), ("class_accuracy", f"level {level}"),
                   ("drop", "drop"), ("relative_drop", "relative drop"), ("overall_drop", "overall drop"),
                   ("excess_drop", "drop − overall drop")],
               caption=f"Level {level}, mean over {runs} run(s).")


def fairness_section(page: ReportPage, sections: Mapping[str, pd.DataFrame], level: int, *, alpha: float = 0.05,
                     detail: bool = False, effect: float = EFFECT) -> None:
    """The figures and tables of one population's fairness analyses, added to ``page``.

    Parameters
    ----------
    page : ReportPage
    sections : mapping of str to DataFrame
        What :func:`ticketlab.analysis.fairness.fairness_analysis` returned (``drops`` and ``fit`` at least).
    level : int
        The pruned level compared with level 0.
    alpha : float
        The significance level the Hooker test used, stated on the page.
    effect : float
        The change the Hooker test's power columns are stated for.
    detail : bool
        The standalone page: a heading per analysis, class accuracy and excess-drop figures, the Hooker figure
        and every table. Without it (the report): class drops, intensification and PIE figures, the mean drop
        table and a one-line Hooker summary.
    """
    drops, fit = sections["drops"], sections["fit"]
    runs = drops["run"].nunique()
    if detail:
        page.heading("Per-class accuracy drops")
    page.figure(class_drop_plot(drops), "Each class's accuracy drop against the overall accuracy drop, level by "
                "level (mean over runs); above the dashed diagonal the class lost more than the model.")
    if detail:
        page.figure(class_accuracy_plot(drops), "Class accuracy per level (mean over runs); dashed: overall "
                    "accuracy.")
        page.figure(excess_drop_plot(drops, level), f"Drop minus overall drop per class at level {level} (mean over "
                    "runs" + ("; bars: standard deviation over runs)." if runs > 1 else ")."))
    _drop_table(page, drops, level, runs)
    if detail:
        page.paragraph("Every level and run is in the JSON and CSV output of 'ticketlab fairness'.", note=True)
        page.heading("Intensification fit")
    page.figure(intensification_plot(drops, fit, level),
                f"Left: class accuracy at level {level} against dense class accuracy with the OLS line (mean of the "
                "runs' lines) and the uniform shift (slope 1). Right: the slope with its 95% confidence interval per "
                "level and run; slope > 1: classes weak before pruning lose more. Noise in the dense class "
                "accuracies pulls every slope towards 0, so a uniform shift gives less than 1 (below).")
    page.paragraph(_fit_summary(fit, level, alpha), note=True)
    if detail:
        page.table(fit, FIT_TABLE)
        page.heading("Hooker et al. per-class test")
    if "hooker" in sections:
        h = sections["hooker"]
        page.paragraph(f"Hooker et al.'s per-class Welch t-test, dense vs level {level}: "
                       f"{int(h['impacted'].sum())} of {len(h)} classes impacted at p ≤ {alpha:g}."
                       + _hooker_caveat(h, effect))
        if detail:
            page.figure(hooker_plot(h), "Change in mean (recall − accuracy) from the dense to the pruned "
                        "population; red: impacted.")
            page.table(h, HOOKER_TABLE, flag="impacted")
    elif detail:
        page.paragraph("Needs at least two runs (e.g. seeds) of one method.", note=True)
    if detail:
        page.heading("Pruning-identified exemplars")
    if "pies" in sections:
        pies = sections["pies"]
        tied = int(pies["pies_tied"].sum()) if "pies_tied" in pies.columns else 0
        if detail or tied:
            total, n = int(pies["pies"].sum()), int(pies["examples"].sum())
            page.paragraph(f"{total:,} of {n:,} test examples are PIEs at level {level}"
                           + (f"; {tied:,} of them rest on a tie between labels (a modal label over "
                              f"{_models(pies)} models)." if tied else "."), note=bool(tied))
        page.figure(pie_plot(pies), f"Pruning-identified exemplars per class at level {level}; above each bar the "
                    "fraction of the class's test examples.")
        if detail:
            page.table(pies, PIE_TABLE)
    elif detail:
        page.paragraph("Needs at least two runs (e.g. seeds) of one method and the test predictions.", note=True)


def _models(frame: pd.DataFrame) -> str:
    d, p = (frame[k].dropna() for k in ("n_dense", "n_pruned"))
    return f"{int(d.iloc[0])} dense and {int(p.iloc[0])} pruned" if len(d) and len(p) else "few"


def _fit_summary(fit: pd.DataFrame, level: int, alpha: float = 0.05) -> str:
    """The population's mean slope at ``level`` against what a uniform shift gives under the noise."""
    at = fit[fit["level"] == level]
    slope = at["slope"].dropna()
    if not len(slope):
        return "No intensification fit at this level."
    head = f"Mean slope at level {level} over {len(slope)} run(s): {slope.mean():.2f}"
    null = at["null_slope"].dropna() if "null_slope" in at.columns else pd.Series(dtype=float)
    if not len(null):
        return (head + ". Noise in the dense class accuracies biases the slope towards 0 (errors in variables), "
                + ("and with one run it cannot be measured" if at["run"].nunique() < 2 else
                   "by an amount these runs cannot estimate")
                + ": a slope below 1 is no evidence that weak classes lose less. Give two runs or more of the "
                "method.")
    rel = at["reliability"].dropna()
    p = at["p_slope_null"].dropna()
    return (head + f"; a uniform shift gives about {null.iloc[0]:.2f} here, not 1, because noise in the dense "
            "class accuracies attenuates the slope"
            + (f" (their reliability is {rel.iloc[0]:.2f})" if len(rel) else "")
            + (f". {int((p <= alpha).sum())} of {len(p)} runs differ from it at p ≤ {alpha:g}" if len(p) else "")
            + ". Compare slopes with this null slope, not with 1: p (slope = 1) can reject for noise alone.")


def _hooker_caveat(h: pd.DataFrame, effect: float = EFFECT) -> str:
    """One sentence of what the test cannot show, when its rows carry caveats."""
    if "caveat" not in h.columns or not h["caveat"].astype(bool).any():
        return ""
    flagged = h[h["caveat"].astype(bool)]
    runs = f"{int(h['n_dense'].iloc[0])} dense and {int(h['n_pruned'].iloc[0])} pruned runs"
    mde = flagged["mde"].dropna()
    need = flagged["runs_needed"].replace(float("inf"), float("nan")).dropna()
    return (f" Caveat: with {runs}, {len(flagged)} of {len(h)} tests are underpowered"
            + (f": they detect with 80% power only changes of {mde.min():.3f}–{mde.max():.3f} or more"
               if len(mde) else "")
            + (f", and a change of {effect:g} would need {int(need.min())}–{int(need.max())} runs per side"
               if len(need) else "") + "; read 'impacted' as a hint, not a finding.")


def fairness_definitions(level: int, *, alpha: float = 0.05, shift: str = "population",
                         ties: str = "largest") -> list[tuple[str, str]]:
    """The terms of the fairness section, as (term, explanation) pairs stating the options used."""
    return [
        ("class accuracy", "Recall of the class: correct predictions of the class / test examples of the class."),
        ("drop", "Dense class accuracy (level 0) minus class accuracy at the level; positive = accuracy lost. "
                 "Relative drop = drop / dense class accuracy."),
        ("drop − overall drop", "How much more (> 0) or less (< 0) the class lost than the overall accuracy."),
        ("intensification fit", "Per level and run, ordinary least squares of class accuracy on dense class "
         "accuracy across classes; 95% intervals from Student's t with C − 2 degrees of freedom. Slope 1 is a "
         "uniform shift of noiseless accuracies; slope > 1 means classes that were weak before pruning lose more. "
         "One run's dense class accuracies are noisy, which biases the slope towards 0 (errors in variables): "
         "from two runs or more of a method the null slope is the slope a uniform shift gives under that noise "
         "(the reliability of the dense class accuracies, 1 − their run-to-run noise variance / their variance "
         "across classes, raised by the noise the pruned network shares with its dense parent), and "
         "p (slope = null slope) tests against it; p (slope = 1) can reject for noise alone. This fit is ticketlab's "
         "own summary, related to the intensification hypothesis of Good et al. (2022); it is not a definition "
         "taken from Paganini (2020), whose per-class metrics we could not verify."),
        ("Hooker et al. test", "Per class, Welch's unequal-variance t-test between the dense models (level 0 of "
         f"each run) and the pruned models (level {level} of each run) of class recall minus "
         + ("the population's mean accuracy (as in Hooker et al.'s code)" if shift == "population"
            else "the model's own accuracy")
         + f"; a class is impacted when p ≤ {alpha:g} (Hooker et al. 2019, arXiv:1911.05248)."),
        ("power and caveat", "From the standard deviation over runs of each population: the smallest change the "
         "test detects with 80% power at this significance level, its power for the stated change, and the runs "
         "per side that change needs (Welch's test under normality). A caveat marks tests with fewer than 3 runs "
         "a side, Welch df below 3 or power below 80%: with 2 runs a side the df is 1–2 and only changes of about "
         "ten standard deviations are detected reliably."),
        ("population", "The runs of one method (same strategy, rates, reset mode, controls, model and dataset), "
         "different seeds; Hooker et al.'s test and PIEs are computed within one population, never across "
         "methods."),
        ("PIE", "Pruning-identified exemplar: a test example whose modal prediction over the pruned models "
         "differs from its modal prediction over the dense models (Hooker et al. 2019). Ties between equally "
         f"frequent labels go to the {ties} label"
         + (" (as Hooker et al.'s code, mode().max())." if ties == "largest" else ".")),
    ]


def fairness_page(sections: Mapping[str, pd.DataFrame], *, runs: Sequence[Mapping[str, Any]], level: int,
                  alpha: float = 0.05, shift: str = "population", ties: str = "largest",
                  title: str = "ticketlab fairness report", generator: str = "ticketlab",
                  effect: float = EFFECT) -> ReportPage:
    """The page of ``ticketlab fairness --report``: the runs, definitions, then :func:`fairness_section` in detail.

    Parameters
    ----------
    sections : mapping of str to DataFrame
        What :func:`ticketlab.analysis.fairness.fairness_analysis` returned (``drops`` and ``fit`` at least).
    runs : sequence of mapping
        One record per run with the keys of :data:`RUN_TABLE` (:attr:`ticketlab.frames.FairnessResult.runs`).
    level : int
        The pruned level compared with level 0.
    alpha, shift, ties, effect
        The options used, stated on the page.

    Runs of several populations (a ``population`` key in ``runs`` and a ``population`` column in the sections, as
    :func:`ticketlab.frames.fairness_of_files` gives them) get one part of the page each.
    """
    page = ReportPage(title)
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page.paragraph(f"Written by {generator} on {now}. {len(runs)} run(s); the pruned level compared with the "
                   f"dense network (level 0) is level {level}. Accuracies are fractions in [0, 1].")
    names = list(dict.fromkeys(r.get("population") for r in runs if r.get("population") is not None))
    page.table(runs, RUN_TABLE + ([("population", "population")] if len(names) > 1 else []))
    page.heading("Definitions")
    page.definitions(fairness_definitions(level, alpha=alpha, shift=shift, ties=ties))
    if len(names) <= 1:
        fairness_section(page, sections, level, alpha=alpha, detail=True, effect=effect)
        return page
    page.paragraph(f"The runs are {len(names)} populations (methods); each is analysed on its own below.")
    for name in names:
        page.heading(f"Population: {name}")
        part = {k: f[f["population"] == name] for k, f in sections.items() if "population" in f.columns}
        part = {k: f.reset_index(drop=True) for k, f in part.items() if len(f)}
        fairness_section(page, part, level, alpha=alpha, detail=True, effect=effect)
    return page


__all__ = ["RUN_TABLE", "fairness_section", "fairness_definitions", "fairness_page"]
