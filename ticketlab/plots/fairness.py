"""Fairness: per-class accuracy drop against the overall drop, the intensification fit, and PIE counts.

The frames are the sections of :func:`ticketlab.analysis.fairness.fairness_analysis` (or
:func:`ticketlab.plots.fairness_frames`); accuracies are fractions.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ticketlab.errors import ConfigError
from ticketlab.plots._style import legend_outside, new_figure, palette, require_columns


def _levels(levels: pd.Series) -> str:
    lv = sorted(int(x) for x in set(levels) if x != 0)
    if not lv:
        return "0"
    return f"{lv[0]}–{lv[-1]}" if lv == list(range(lv[0], lv[-1] + 1)) and len(lv) > 2 else ", ".join(map(str, lv))


def class_drop_plot(drops: pd.DataFrame, *, title: str | None = None) -> Any:
    """Each class's accuracy drop against the overall accuracy drop, level by level (mean over runs).

    Parameters
    ----------
    drops : pandas.DataFrame
        The ``drops`` section (:func:`ticketlab.analysis.fairness.class_drops`): needs ``level``, ``class``,
        ``class_name``, ``drop`` and ``overall_drop``.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
        One line per class through its levels (level 0 at the origin); the dashed diagonal is a uniform drop
        (every class loses what the model loses). Points above it: the class lost more than the model.
    """
    require_columns(drops, ["level", "class", "class_name", "drop", "overall_drop"], "class_drop_plot")
    mean = drops.groupby(["class", "class_name", "level"], sort=True)[["drop", "overall_drop"]].mean().reset_index()
    classes = mean[["class", "class_name"]].drop_duplicates().to_numpy()
    fig = new_figure(7.2, 4.6)
    ax = fig.add_subplot()
    for (c, name), colour in zip(classes, palette(len(classes))):
        r = mean[mean["class"] == c].sort_values("level")
        ax.plot(r["overall_drop"], r["drop"], marker="o", ms=3.5, lw=1.2, color=colour, label=str(name))
    # axline spans the axes without widening them to the classes' range on the y axis
    ax.axline((0.0, 0.0), slope=1.0, color="black", ls="--", lw=1, label="uniform drop (class = overall)")
    ax.axhline(0, color="#999999", lw=0.6)
    ax.axvline(0, color="#999999", lw=0.6)
    ax.set_xlabel("overall accuracy drop (dense − pruned, fraction)")
    ax.set_ylabel("class accuracy drop (fraction)")
    ax.grid(True, alpha=0.3)
    n = drops["run"].nunique() if "run" in drops.columns else 1
    ax.set_title(title if title is not None else
                 f"Per-class vs overall accuracy drop; each line runs through levels {_levels(mean['level'])}\n"
                 f"from the origin (level 0); mean over {n} run{'s' if n != 1 else ''}",
                 fontsize=10)
    legend_outside(ax, title="class")
    return fig


def intensification_plot(drops: pd.DataFrame, fit: pd.DataFrame, level: int | None = None) -> Any:
    """The intensification scatter at one level with its OLS fit, and the fitted slope at every level.

    Parameters
    ----------
    drops : pandas.DataFrame
        The ``drops`` section (needs ``level``, ``class``, ``dense_class_accuracy``, ``class_accuracy``,
        ``overall_drop``, ``run``).
    fit : pandas.DataFrame
        The ``fit`` section (:func:`ticketlab.analysis.fairness.intensification_fit`).
    level : int, optional
        The level of the scatter (default: the last level of ``fit``).

    Returns
    -------
    matplotlib.figure.Figure
        Left: class accuracy at the level against dense class accuracy, each run's classes (grey), their mean
        (red), the OLS line and the uniform-shift line (slope 1). Right: slope with its 95% confidence interval per
        level and run; slope > 1 means classes weak before pruning lose more. This is the figure of
        ``ticketlab fairness --report``.
    """
    from ticketlab.analysis.report_html import _fit_figure

    require_columns(drops, ["level", "class", "dense_class_accuracy", "class_accuracy", "overall_drop", "run"],
                    "intensification_plot")
    require_columns(fit, ["run", "level", "slope", "intercept", "slope_ci_low", "slope_ci_high"],
                    "intensification_plot")
    level = int(fit["level"].max()) if level is None else int(level)
    at_level = drops[drops["level"] == level]
    if at_level.empty:
        raise ConfigError(f"intensification_plot: no level {level} in the drops frame")
    return _fit_figure(at_level, fit, level)


def pie_plot(pies: pd.DataFrame, *, title: str | None = None) -> Any:
    """Pruning-identified exemplars (PIEs) per class: counts as bars, each class's PIE fraction written above.

    Parameters
    ----------
    pies : pandas.DataFrame
        The ``pies`` section (:func:`ticketlab.analysis.fairness.pie_counts`): ``class_name``, ``pies``,
        ``examples``, ``pie_fraction`` (and ``level``).
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    require_columns(pies, ["class_name", "pies", "examples", "pie_fraction"], "pie_plot")
    names = [str(n) for n in pies["class_name"]]
    fig = new_figure(max(5.0, 1.5 + 0.45 * len(names)), 3.8)
    ax = fig.add_subplot()
    bars = ax.bar(range(len(names)), pies["pies"].to_numpy(), color=palette(1)[0])
    for bar, frac in zip(bars, pies["pie_fraction"].to_numpy(float)):
        if np.isfinite(frac):
            ax.annotate(f"{frac:.1%}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), xytext=(0, 2),
                        textcoords="offset points", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=90 if len(names) > 12 or max(map(len, names), default=0) > 6 else 0,
                       fontsize=8)
    ax.set_xlabel("true class")
    ax.set_ylabel("PIEs (test examples)")
    ax.margins(y=0.15)
    ax.grid(True, axis="y", alpha=0.3)
    level = pies["level"].dropna().iloc[0] if "level" in pies.columns and pies["level"].notna().any() else None
    total, n = int(pies["pies"].sum()), int(pies["examples"].sum())
    default = (f"{total:,} of {n:,} test examples are PIEs" + (f" at level {level}" if level is not None else "")
               + " (above each bar: PIEs / class examples)")
    ax.set_title(title if title is not None else default, fontsize=10)
    return fig


__all__ = ["class_drop_plot", "intensification_plot", "pie_plot"]
