"""Fairness: per-class accuracy drop against the overall drop, the intensification fit, and PIE counts.

The frames are the sections of :func:`ticketlab.analysis.fairness.fairness_analysis` (or, from ticket files,
:func:`ticketlab.frames.fairness_frames`); accuracies are fractions. These are the figures of both the report's
fairness section and ``ticketlab fairness --report`` (:mod:`ticketlab.report.fairness`).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from ticketlab.errors import ConfigError
from ticketlab.plots._style import legend_outside, new_figure, palette, require_columns


def _levels(levels: pd.Series) -> str:
    lv = sorted(int(x) for x in set(levels) if x != 0)
    if not lv:
        return "0"
    return f"{lv[0]}–{lv[-1]}" if lv == list(range(lv[0], lv[-1] + 1)) and len(lv) > 2 else ", ".join(map(str, lv))


def _of_population(frame: pd.DataFrame) -> str:
    """``" of rewind-init"`` when the frame names the one population its runs belong to."""
    if "population" in frame.columns and frame["population"].nunique() == 1:
        return f" of {frame['population'].iloc[0]}"
    return ""


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
                 f"from the origin (level 0); mean over {n} run{'s' if n != 1 else ''}{_of_population(drops)}",
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
        level and run, beside 1 and, when ``fit`` has it, the ``null_slope`` per level: the slope a uniform shift
        gives through the noise of the dense class accuracies (docs/design.md, Statistics), the line to compare
        with; a slope above it means classes weak before pruning lose more.
    """
    require_columns(drops, ["level", "class", "dense_class_accuracy", "class_accuracy", "overall_drop", "run"],
                    "intensification_plot")
    require_columns(fit, ["run", "level", "slope", "intercept", "slope_ci_low", "slope_ci_high"],
                    "intensification_plot")
    level = int(fit["level"].max()) if level is None else int(level)
    at_level = drops[drops["level"] == level]
    if at_level.empty:
        raise ConfigError(f"intensification_plot: no level {level} in the drops frame")
    from matplotlib.ticker import MaxNLocator

    fig = new_figure(11, 4.2)
    ax, bx = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    m = at_level.groupby("class")[["dense_class_accuracy", "class_accuracy"]].mean()
    ax.scatter(at_level["dense_class_accuracy"], at_level["class_accuracy"], s=10, alpha=.35, color="#888",
               label="class, one run")
    ax.scatter(m["dense_class_accuracy"], m["class_accuracy"], s=25, color="#c0392b", label="class, mean of runs")
    here = fit[fit["level"] == level]
    lo, hi = np.nanmin(at_level["dense_class_accuracy"]), np.nanmax(at_level["dense_class_accuracy"])
    xs = np.linspace(lo, hi, 2)
    if len(here) and np.isfinite(here["slope"]).any():
        s, b = here["slope"].mean(), here["intercept"].mean()
        ax.plot(xs, b + s * xs, color="#c0392b", label=f"OLS, mean of the runs' lines (slope {s:.2f})")
    overall = at_level.groupby("run")["overall_drop"].first().mean()
    ax.plot(xs, xs - overall, color="black", ls="--", lw=1, label="uniform shift (slope 1)")
    ax.set_xlabel("dense class accuracy (level 0)")
    ax.set_ylabel(f"class accuracy at level {level}")
    ax.legend(fontsize=7)
    ax.grid(alpha=.3)
    runs = list(dict.fromkeys(fit["run"]))
    for i, run in enumerate(runs):
        f = fit[fit["run"] == run]
        x = f["level"].to_numpy() + (i - (len(runs) - 1) / 2) * 0.08
        err = np.vstack([f["slope"] - f["slope_ci_low"], f["slope_ci_high"] - f["slope"]])
        bx.errorbar(x, f["slope"], yerr=None if np.isnan(err).all() else err, fmt="o", ms=3, capsize=2, lw=.8,
                    label=str(run) if len(runs) <= 10 else None)
    bx.axhline(1, color="black", ls="--", lw=.8, label="uniform shift, noiseless (1)")
    if "null_slope" in fit and np.isfinite(fit["null_slope"]).any():
        # what a uniform shift gives through noise in the dense class accuracies (attenuation): compare with this
        null = fit.groupby("level")["null_slope"].mean()
        bx.plot(null.index, null.to_numpy(), color="#c0392b", ls=":", marker="_", ms=10, lw=1.2,
                label="uniform shift through the runs' noise (null slope)")
    bx.xaxis.set_major_locator(MaxNLocator(integer=True))
    bx.set_xlabel("level")
    bx.set_ylabel("slope (95% CI)")
    bx.grid(alpha=.3)
    if len(runs) <= 10:
        bx.legend(fontsize=7)
    return fig


def pie_plot(pies: pd.DataFrame, *, title: str | None = None) -> Any:
    """Pruning-identified exemplars (PIEs) per class: counts as bars, each class's PIE fraction written above.

    Parameters
    ----------
    pies : pandas.DataFrame
        The ``pies`` section (:func:`ticketlab.analysis.fairness.pie_counts`): ``class_name``, ``pies``,
        ``examples``, ``pie_fraction`` (and ``level``; ``pies_tied``, ``n_dense``, ``n_pruned`` and ``population``,
        when present, go into the default title: how many PIEs rest on a tie, over how many models).
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
               + _of_population(pies) + " (above each bar: PIEs / class examples)")
    tied = int(pies["pies_tied"].sum()) if "pies_tied" in pies.columns else 0
    if tied and {"n_dense", "n_pruned"} <= set(pies.columns) and pies["n_dense"].notna().any():
        default += (f"\n{tied:,} of them rest on a tie between labels: modal labels over only "
                    f"{int(pies['n_dense'].iloc[0])} dense and {int(pies['n_pruned'].iloc[0])} pruned models")
    ax.set_title(title if title is not None else default, fontsize=10)
    return fig


def _class_axis(ax: Any, names: Sequence[str]) -> None:
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=90 if len(names) > 12 or max(map(len, names), default=0) > 6 else 0,
                       fontsize=8 if len(names) > 20 else 9)
    ax.set_xlabel("class")


def class_accuracy_plot(drops: pd.DataFrame, *, title: str | None = None) -> Any:
    """Each class's accuracy against level (mean over runs), with the overall accuracy dashed.

    Parameters
    ----------
    drops : pandas.DataFrame
        The ``drops`` section: needs ``run``, ``level``, ``class``, ``class_name``, ``class_accuracy`` and
        ``accuracy``.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib
    from matplotlib.ticker import MaxNLocator

    require_columns(drops, ["run", "level", "class", "class_name", "class_accuracy", "accuracy"],
                    "class_accuracy_plot")
    fig = new_figure(7.5, 4.0)
    ax = fig.add_subplot()
    mean = drops.groupby(["class", "class_name", "level"], sort=True)["class_accuracy"].mean().reset_index()
    classes = mean[["class", "class_name"]].drop_duplicates().to_numpy()
    cmap = matplotlib.colormaps["tab20" if len(classes) > 10 else "tab10"]
    for i, (c, name) in enumerate(classes):
        m = mean[mean["class"] == c]
        ax.plot(m["level"], m["class_accuracy"], marker=".", lw=1, color=cmap(i % cmap.N), label=str(name))
    overall = drops.groupby(["run", "level"])["accuracy"].first().groupby("level").mean()
    ax.plot(overall.index, overall.to_numpy(), color="black", lw=2.5, ls="--", label="overall")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("level (0 = dense)")
    ax.set_ylabel("class accuracy (recall, fraction)")
    ax.grid(alpha=.3)
    if len(classes) <= 20:
        ax.legend(fontsize=7, ncol=2, loc="center left", bbox_to_anchor=(1.01, .5))
    if title is not None:
        ax.set_title(title, fontsize=10)
    return fig


def excess_drop_plot(drops: pd.DataFrame, level: int, *, title: str | None = None) -> Any:
    """Each class's drop minus the overall drop at one level: bars of the mean over runs, sd as error bars.

    Parameters
    ----------
    drops : pandas.DataFrame
        The ``drops`` section: needs ``level``, ``class``, ``class_name`` and ``excess_drop``.
    level : int
        The level shown.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
        Red bars: the class lost more than the model; blue: less.
    """
    require_columns(drops, ["level", "class", "class_name", "excess_drop"], "excess_drop_plot")
    at_level = drops[drops["level"] == level]
    if at_level.empty:
        raise ConfigError(f"excess_drop_plot: no level {level} in the drops frame")
    fig = new_figure(7.5, 4.0)
    ax = fig.add_subplot()
    g = at_level.groupby(["class", "class_name"], sort=True)["excess_drop"]
    mean, sd = g.mean(), g.std(ddof=1)
    names = [str(n) for _, n in mean.index]
    colors = ["#c0392b" if v > 0 else "#2980b9" for v in mean.to_numpy()]
    ax.bar(range(len(mean)), mean.to_numpy(), yerr=None if sd.isna().all() else sd.to_numpy(), color=colors,
           capsize=2)
    ax.axhline(0, color="black", lw=.8)
    _class_axis(ax, names)
    ax.set_ylabel("drop − overall drop (fraction)")
    if title is not None:
        ax.set_title(title, fontsize=10)
    return fig


def hooker_plot(hooker: pd.DataFrame, *, title: str | None = None) -> Any:
    """Hooker et al.'s test per class: the change in mean (recall − accuracy), impacted classes in red.

    Parameters
    ----------
    hooker : pandas.DataFrame
        The ``hooker`` section (:func:`ticketlab.analysis.fairness.hooker_test`): needs ``class_name``,
        ``change`` and ``impacted``.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    require_columns(hooker, ["class_name", "change", "impacted"], "hooker_plot")
    fig = new_figure(7.5, 4.0)
    ax = fig.add_subplot()
    colors = ["#c0392b" if f else "#95a5a6" for f in hooker["impacted"]]
    ax.bar(range(len(hooker)), hooker["change"].to_numpy(), color=colors)
    ax.axhline(0, color="black", lw=.8)
    _class_axis(ax, [str(n) for n in hooker["class_name"]])
    ax.set_ylabel("change in (recall − accuracy)")
    if title is not None:
        ax.set_title(title, fontsize=10)
    return fig


__all__ = ["class_drop_plot", "class_accuracy_plot", "excess_drop_plot", "intensification_plot",
           "hooker_plot", "pie_plot"]
