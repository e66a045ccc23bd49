"""The figures of a study: one line (or bar) per method, over its seeds, never pooling two methods.

Each function takes a tidy frame and returns a Figure; the frames come from :mod:`ticketlab.frames.study` (or a
CSV written by ``ticketlab study frame``). A *method* is a chain's axis values but its seed (column ``method``);
its chains, one per seed, give the band around its line.

=============================  ===================================================================================
function                       figure (input)
=============================  ===================================================================================
study_accuracy                 test accuracy vs density per method, band over seeds, controls dashed (study frame)
study_early_stop               early-stopping iteration vs density, likewise
method_overlap_heatmap         method x method mean Jaccard at one level beside chance (``method_overlap``)
class_drops_by_method          per-class accuracy drop per method, range over seeds (fairness ``drops``)
hooker_by_method               Hooker et al.'s change per class per method, impacted classes marked (``hooker``)
structure_vs_density           fully pruned units/channels/kernels and effective density vs density per method
=============================  ===================================================================================
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ticketlab.errors import ConfigError
from ticketlab.plots._style import (DENSITY_LABEL, JACCARD_LABEL, SEQUENTIAL, fmt_number, legend_outside, new_figure,
                                    nice_ticks, palette, require_columns)
from ticketlab.plots.accuracy import metric_vs_density

#: The ``branch`` of a chain's own line in a study frame.
MAIN = "main"
_SAME, _DIFFERENT = "same seed", "different seeds"
#: Panel titles of :func:`structure_vs_density`, by ``measure``.
MEASURES = {"output": "fully pruned output units / filters", "input": "fully pruned input units / channels",
            "kernel": "fully pruned conv kernels", "effective": "effective density"}


def _is_main(branch: Any) -> bool:
    return branch is None or branch == MAIN or (isinstance(branch, float) and np.isnan(branch))


def _as_runs(frame: pd.DataFrame, y: str, what: str) -> pd.DataFrame:
    """A study frame in :func:`metric_vs_density`'s terms: ``run`` = chain, ``branch`` None on the main line."""
    require_columns(frame, ["method", "chain", "level", "density", y], what)
    out = frame.copy()
    branch = out["branch"] if "branch" in out.columns else pd.Series([None] * len(out), index=out.index)
    controls = [None if _is_main(b) else str(b) for b in branch]
    out["line"] = [str(m) if b is None else f"{m} / {b}" for m, b in zip(out["method"], controls)]
    out["branch"] = pd.Series(controls, index=out.index, dtype=object)
    out["run"] = out["chain"]
    if "seed" not in out.columns:
        out["seed"] = np.nan
    return out


def study_metric_vs_density(frame: pd.DataFrame, y: str = "accuracy", *, band: str = "range",
                            per_run: bool = False, title: str | None = None, ax: Any = None) -> Any:
    """A per-level quantity of a study against density: one line per method, a band over its seeds, each control
    branch dashed (reinit), dotted (shuffle) or dash-dotted (random) in its method's colour.

    Parameters
    ----------
    frame : pandas.DataFrame
        The study frame (:func:`ticketlab.study.study_frame` or ``ticketlab study frame``'s CSV): needs
        ``method``, ``chain``, ``level``, ``density`` and ``y``; ``branch`` and ``seed`` are used when present.
    y : str
        The column on the y axis.
    band, per_run, title, ax
        As for :func:`ticketlab.plots.metric_vs_density` (``band``: ``"range"`` min–max over seeds, ``"sd"``,
        ``"none"``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    return metric_vs_density(_as_runs(frame, y, "study_metric_vs_density"), y, band=band, per_run=per_run,
                             title=title, ax=ax)


def study_accuracy(frame: pd.DataFrame, **kwargs: Any) -> Any:
    """Test accuracy (fraction) against density per method of a study; see :func:`study_metric_vs_density`."""
    return study_metric_vs_density(frame, "accuracy", **kwargs)


def study_early_stop(frame: pd.DataFrame, **kwargs: Any) -> Any:
    """Early-stopping iteration (minimum validation loss) against density per method; see
    :func:`study_metric_vs_density`."""
    return study_metric_vs_density(frame, "early_stop_iteration", **kwargs)


def method_overlap_heatmap(summary: pd.DataFrame, *, title: str | None = None) -> Any:
    """The method × method mask overlap at one level: mean Jaccard over pairs of chains, chance in parentheses.

    Parameters
    ----------
    summary : pandas.DataFrame
        :func:`ticketlab.frames.method_overlap`'s rows: ``method_a``, ``method_b``, ``seeds`` (``"different
        seeds"`` or ``"same seed"``), ``pairs``, ``jaccard``, ``expected_jaccard``; ``level`` and ``density`` for
        the title.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
        A panel for pairs of chains with different seeds (the diagonal: a method's seeds against each other) and,
        when there are any, one for pairs with the same seed (same initial weights; different methods only).
        Each cell: the mean Jaccard (colour, viridis 0–1), the chance level in parentheses and the number of
        pairs.
    """
    require_columns(summary, ["method_a", "method_b", "seeds", "pairs", "jaccard", "expected_jaccard"],
                    "method_overlap_heatmap")
    methods = list(dict.fromkeys([*summary["method_a"], *summary["method_b"]]))
    index = {m: i for i, m in enumerate(methods)}
    panels = [p for p in (_DIFFERENT, _SAME) if p in set(summary["seeds"])]
    n = len(methods)
    side = min(2.2 + 0.9 * n, 9)
    longest = max(len(str(m)) for m in methods)
    fig = new_figure(side * len(panels) + 0.07 * longest + 1.4, side + 0.07 * longest)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    image = None
    for ax, panel in zip(axes, panels):
        m = np.full((n, n), np.nan)
        text = np.full((n, n), "", dtype=object)
        for r in summary[summary["seeds"] == panel].itertuples():
            i, j = index[r.method_a], index[r.method_b]
            for a, b in {(i, j), (j, i)}:
                m[a, b] = r.jaccard
                text[a, b] = f"{r.jaccard:.2f}\n({r.expected_jaccard:.2f})\nn={r.pairs}"
        image = ax.imshow(np.ma.masked_invalid(m), cmap=SEQUENTIAL, vmin=0, vmax=1)
        fontsize = 9 if n <= 4 else (7 if n <= 8 else 5)
        for a in range(n):
            for b in range(n):
                if text[a, b]:
                    ax.text(b, a, text[a, b], ha="center", va="center", fontsize=fontsize,
                            color="white" if m[a, b] < 0.55 else "black")
        ax.set_xticks(range(n))
        ax.set_xticklabels(methods, rotation=35, ha="right", fontsize=8)
        ax.set_yticks(range(n))
        ax.set_yticklabels(methods if ax is axes[0] else [""] * n, fontsize=8)
        ax.set_facecolor("#f2f2f2")
        ax.set_title("different seeds" if panel == _DIFFERENT else "same seed (same initial weights)", fontsize=9)
    fig.colorbar(image, ax=list(axes), label=JACCARD_LABEL, shrink=0.8)
    if title is None:
        where = ""
        if "level" in summary.columns and "density" in summary.columns:
            where = f" at level {int(summary['level'].iloc[0])} (density {summary['density'].mean():.3g})"
        title = f"Mask overlap between methods{where}: mean Jaccard over pairs of chains, (chance), pairs"
    fig.suptitle(title, fontsize=10)
    return fig


def _method_colours(methods: list[str]) -> dict[str, str]:
    return dict(zip(methods, palette(len(methods))))


def _class_positions(classes: pd.DataFrame, ax: Any) -> None:
    names = [str(n) for n in classes["class_name"]]
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=90 if len(names) > 12 or max(map(len, names), default=0) > 6 else 0,
                       fontsize=8 if len(names) > 20 else 9)
    ax.set_xlabel("class")


def class_drops_by_method(drops: pd.DataFrame, level: int, *, title: str | None = None) -> Any:
    """Each class's accuracy drop at one level, per method: bars of the mean over seeds, the min–max range as
    error bars, and each method's overall drop as a dashed line in its colour.

    Parameters
    ----------
    drops : pandas.DataFrame
        The ``drops`` section of :func:`ticketlab.frames.study_fairness` (needs ``population``, ``run``,
        ``level``, ``class``, ``class_name``, ``drop`` and ``overall_drop``).
    level : int
        The level shown (drops are from level 0).
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    require_columns(drops, ["population", "run", "level", "class", "class_name", "drop", "overall_drop"],
                    "class_drops_by_method")
    at = drops[drops["level"] == level]
    if at.empty:
        raise ConfigError(f"class_drops_by_method: no level {level} in the drops frame")
    methods = list(dict.fromkeys(at["population"]))
    colour = _method_colours(methods)
    classes = at[["class", "class_name"]].drop_duplicates().sort_values("class").reset_index(drop=True)
    width = 0.8 / len(methods)
    fig = new_figure(max(7.5, 0.35 * len(classes) * len(methods) + 3), 4.2)
    ax = fig.add_subplot()
    for k, m in enumerate(methods):
        part = at[at["population"] == m]
        g = part.groupby("class")["drop"]
        mean = g.mean().reindex(classes["class"])
        lo, hi = g.min().reindex(classes["class"]), g.max().reindex(classes["class"])
        x = np.arange(len(classes)) + (k - (len(methods) - 1) / 2) * width
        runs = part["run"].nunique()
        err = np.vstack([mean - lo, hi - mean]) if runs > 1 else None
        ax.bar(x, mean.to_numpy(), width=width * 0.92, yerr=err, capsize=1.5, color=colour[m],
               error_kw={"lw": 0.8}, label=f"{m} ({runs} seed{'s' if runs != 1 else ''})")
        overall = part.groupby("run")["overall_drop"].first().mean()
        ax.axhline(overall, color=colour[m], ls="--", lw=1.1)
    ax.axhline(0, color="black", lw=0.8)
    _class_positions(classes, ax)
    ax.set_ylabel("class accuracy drop from level 0 (fraction)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_title(title if title is not None else
                 f"Per-class accuracy drop at level {level}: mean over seeds (bars: min–max); dashed: the method's "
                 "overall drop", fontsize=10)
    legend_outside(ax, title="method")
    return fig


def hooker_by_method(hooker: pd.DataFrame, *, title: str | None = None) -> Any:
    """Hooker et al.'s test per class and method: the change in mean (recall − accuracy) from the dense to the
    pruned models of each method, classes the test flags (p ≤ alpha) outlined in black and starred.

    Parameters
    ----------
    hooker : pandas.DataFrame
        The ``hooker`` section of :func:`ticketlab.frames.study_fairness` (needs ``population``, ``class``,
        ``class_name``, ``change``, ``impacted``; ``n_dense`` and ``n_pruned`` name the runs in the legend).
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    require_columns(hooker, ["population", "class", "class_name", "change", "impacted"], "hooker_by_method")
    methods = list(dict.fromkeys(hooker["population"]))
    colour = _method_colours(methods)
    classes = hooker[["class", "class_name"]].drop_duplicates().sort_values("class").reset_index(drop=True)
    width = 0.8 / len(methods)
    fig = new_figure(max(7.5, 0.35 * len(classes) * len(methods) + 3), 4.2)
    ax = fig.add_subplot()
    for k, m in enumerate(methods):
        part = hooker[hooker["population"] == m].set_index("class").reindex(classes["class"])
        x = np.arange(len(classes)) + (k - (len(methods) - 1) / 2) * width
        flagged = part["impacted"].fillna(False).astype(bool).to_numpy()
        runs = ""
        if {"n_dense", "n_pruned"} <= set(part.columns) and part["n_dense"].notna().any():
            runs = f" ({int(part['n_dense'].max())} + {int(part['n_pruned'].max())} runs)"
        change = part["change"].to_numpy(dtype=float)
        ax.bar(x, np.nan_to_num(change), width=width * 0.92, color=colour[m], label=f"{m}{runs}",
               edgecolor=["black" if f else "none" for f in flagged], linewidth=1.2)
        for xi, c, f in zip(x, change, flagged):
            if f and np.isfinite(c):
                ax.annotate("*", (xi, c), ha="center", va="bottom" if c >= 0 else "top", fontsize=11)
    ax.axhline(0, color="black", lw=0.8)
    _class_positions(classes, ax)
    ax.set_ylabel("change in (recall − accuracy)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_title(title if title is not None else
                 "Hooker et al.'s test per method (dense vs pruned seeds); * outlined: impacted (p ≤ alpha)",
                 fontsize=10)
    legend_outside(ax, title="method (dense + pruned)")
    return fig


def structure_vs_density(structure: pd.DataFrame, *, band: str = "range", title: str | None = None) -> Any:
    """Structure in the masks against density, one panel per measure, one line per method with a band over seeds.

    Parameters
    ----------
    structure : pandas.DataFrame
        :func:`ticketlab.frames.study_structure`'s rows: ``method``, ``chain``, ``seed``, ``level``,
        ``density``, ``measure`` (``output``, ``input``, ``kernel``, ``effective``), ``value`` and ``chance``.
    band : {"range", "sd", "none"}
        The band over seeds.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
        Fully pruned fractions beside their random-placement expectation (dashed grey, mean over chains);
        effective density (log scale) beside the density itself (dashed grey: every kept weight effective).
    """
    require_columns(structure, ["method", "chain", "level", "density", "measure", "value", "chance"],
                    "structure_vs_density")
    measures = [m for m in MEASURES if m in set(structure["measure"])]
    fig = new_figure(3.9 * len(measures) + 2.4, 4.0)
    axes = fig.subplots(1, len(measures), squeeze=False)[0]
    for ax, measure in zip(axes, measures):
        part = structure[structure["measure"] == measure].assign(branch=None)
        metric_vs_density(_as_runs(part, "value", "structure_vs_density"), "value", band=band, ax=ax,
                          ylabel=MEASURES[measure] + (" (kept on a path)" if measure == "effective" else
                                                      " (fraction)"))
        chance = part.groupby("level")[["density", "chance"]].mean().sort_values("density")
        ax.plot(chance["density"], chance["chance"], color="#777777", ls="--", lw=1.1,
                label="density itself" if measure == "effective" else "random placement")
        if measure == "effective":
            from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

            ax.set_yscale("log")
            values = part["value"][part["value"] > 0]
            ticks = nice_ticks(float(values.min()), float(values.max())) if len(values) else []
            if len(ticks) >= 2:
                ax.yaxis.set_major_locator(FixedLocator(ticks))
            ax.yaxis.set_major_formatter(FuncFormatter(fmt_number))
            ax.yaxis.set_minor_formatter(NullFormatter())
        else:  # fractions: from 0, and never a scale of 1e-39 for a chance level that is practically 0
            top = np.nanmax([part["value"].max(), chance["chance"].max()])
            ax.set_ylim(0, max(0.05, 1.15 * float(top)))
        ax.set_xlabel(DENSITY_LABEL, fontsize=8)
        ax.yaxis.label.set_fontsize(8)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, fontsize=8, loc="outside right upper", frameon=False,
               title="method (band: over seeds)" if band != "none" else "method", title_fontsize=8)
    fig.suptitle(title if title is not None else "Structure of the masks against density, per method",
                 fontsize=10)
    return fig


__all__ = ["MEASURES", "study_metric_vs_density", "study_accuracy", "study_early_stop", "method_overlap_heatmap",
           "class_drops_by_method", "hooker_by_method", "structure_vs_density"]
