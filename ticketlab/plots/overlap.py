"""Mask overlap: the pairwise Jaccard matrix as an annotated heatmap, and Jaccard against level beside chance.

The chance level is the Jaccard expected if each mask kept, in every layer, the same number of weights chosen
uniformly at random (:func:`ticketlab.analysis.overlap.expected_jaccard`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ticketlab.analysis.overlap import jaccard_matrix
from ticketlab.errors import ConfigError
from ticketlab.plots._style import JACCARD_LABEL, LEVEL_LABEL, SEQUENTIAL, new_figure, palette, require_columns


def jaccard_heatmap(pairwise: pd.DataFrame, *, layer: str = "total", chance: bool = True,
                    title: str | None = None) -> Any:
    """The pairwise Jaccard matrix of several masks as an annotated heatmap.

    Parameters
    ----------
    pairwise : pandas.DataFrame
        A pairwise overlap frame (``a``, ``b``, ``layer``, ``jaccard``, ``expected_jaccard``), as
        :func:`ticketlab.analysis.overlap.pairwise_overlap` or :func:`ticketlab.frames.overlap_frame` return.
    layer : str
        The layer to show; ``"total"`` (default) pools all layers.
    chance : bool
        Write the chance level under each off-diagonal value, in parentheses (when at most 12 masks).
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
        Colour: Jaccard in [0, 1] (viridis); the diagonal is 1 (a mask with itself).
    """
    import seaborn as sns

    require_columns(pairwise, ["a", "b", "layer", "jaccard"], "jaccard_heatmap")
    if layer not in set(pairwise["layer"]):
        raise ConfigError(f"jaccard_heatmap: no layer {layer!r} in the frame")
    m = jaccard_matrix(pairwise, "jaccard", layer)
    n = len(m)
    show_chance = chance and "expected_jaccard" in pairwise.columns and n <= 12
    e = jaccard_matrix(pairwise, "expected_jaccard", layer) if show_chance else None
    text = np.empty(m.shape, dtype=object)
    for i in range(n):
        for j in range(n):
            v = m.iat[i, j]
            text[i, j] = "" if pd.isna(v) else f"{v:.2f}"
            if e is not None and i != j and not pd.isna(e.iat[i, j]):
                text[i, j] += f"\n({e.iat[i, j]:.2f})"
    longest = max((len(str(x)) for x in m.index), default=4)
    side = min(2.5 + 0.75 * n, 13)
    fig = new_figure(side + 0.06 * longest + 1.2, side + 0.06 * longest)
    ax = fig.add_subplot()
    fontsize = 9 if n <= 6 else (7 if n <= 12 else 5)
    sns.heatmap(m, ax=ax, cmap=SEQUENTIAL, vmin=0, vmax=1, annot=text if n <= 25 else False, fmt="",
                annot_kws={"fontsize": fontsize}, square=True, linewidths=0.5, linecolor="white",
                cbar_kws={"label": JACCARD_LABEL, "shrink": 0.8})
    ax.set_xticklabels(ax.get_xticklabels(), rotation=35, ha="right", fontsize=8)
    ax.set_yticklabels(ax.get_yticklabels(), rotation=0, fontsize=8)
    ax.set_xlabel("")
    ax.set_ylabel("")
    what = "all layers" if layer == "total" else layer
    default = f"Jaccard of masks ({what})" + ("; in parentheses: chance level" if show_chance else "")
    ax.set_title(title if title is not None else default, fontsize=10)
    return fig


GROUPS = ("auto", "pair", "methods")


def _pair_name(a: str, b: str) -> str:
    return f"{a} seeds" if a == b else f"{a} vs {b}"


def jaccard_vs_level(levels: pd.DataFrame, *, layer: str = "total", group: str = "auto",
                     title: str | None = None) -> Any:
    """Jaccard of pairs of runs at each level, beside its chance level.

    Parameters
    ----------
    levels : pandas.DataFrame
        One row per pair, level and layer, as :func:`ticketlab.frames.level_overlap_frame` returns: needs ``a``,
        ``b``, ``level``, ``layer``, ``jaccard`` and ``expected_jaccard``; grouping by method also needs
        ``method_a``, ``method_b``, ``seed_a`` and ``seed_b``.
    layer : str
        ``"total"`` (all layers pooled, default) or one layer's name.
    group : {"auto", "pair", "methods"}
        ``"pair"``: one line per pair of runs (solid) with its chance level (dashed, same colour).
        ``"methods"``: pairs with the same seed (same initialisation) and with different seeds in two panels;
        in each, one line per pair of methods, the mean over its pairs of runs with a min–max band, and the
        chance level (mean over pairs) dashed in black. ``"auto"`` (default): ``"pair"`` for up to six pairs.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    require_columns(levels, ["a", "b", "level", "layer", "jaccard", "expected_jaccard"], "jaccard_vs_level")
    if group not in GROUPS:
        raise ConfigError(f"unknown group {group!r}; choose one of: {', '.join(GROUPS)}")
    rows = levels[levels["layer"] == layer]
    if rows.empty:
        raise ConfigError(f"jaccard_vs_level: no rows for layer {layer!r}")
    pairs = list(dict.fromkeys(zip(rows["a"], rows["b"])))
    by_method = {"method_a", "method_b", "seed_a", "seed_b"} <= set(rows.columns)
    if group == "auto":
        group = "methods" if by_method and len(pairs) > 6 else "pair"
    if group == "methods" and not by_method:
        raise ConfigError("grouping by method needs the columns method_a, method_b, seed_a and seed_b "
                          "(as level_overlap_frame returns them)")
    what = "all layers" if layer == "total" else layer
    chance = Line2D([], [], color="black", ls="--", lw=1.1)
    chance_label = "chance level (random masks,\nsame per-layer counts)"

    def finish(ax: Any) -> None:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel(LEVEL_LABEL)
        ax.set_ylim(0, 1.02)
        ax.grid(True, alpha=0.3)

    if group == "pair":
        fig = new_figure(7.2, 4.2)
        ax = fig.add_subplot()
        for (a, b), c in zip(pairs, palette(len(pairs))):
            r = rows[(rows["a"] == a) & (rows["b"] == b)].sort_values("level")
            ax.plot(r["level"], r["jaccard"], marker="o", ms=3.5, lw=1.6, color=c, label=f"{a} vs {b}")
            ax.plot(r["level"], r["expected_jaccard"], ls="--", lw=1.1, color=c, label="_chance")
        finish(ax)
        ax.set_ylabel(JACCARD_LABEL)
        handles, labels = ax.get_legend_handles_labels()
        ax.legend(handles + [chance], labels + [chance_label], fontsize=8, loc="upper left",
                  bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False)
        ax.set_title(title if title is not None else f"Jaccard of pairs of runs ({what})", fontsize=10)
        return fig

    rows = rows.copy()
    methods = list(dict.fromkeys(list(rows["method_a"]) + list(rows["method_b"])))
    rank = {m: i for i, m in enumerate(methods)}
    rows["pair"] = [_pair_name(*sorted((a, b), key=rank.get)) for a, b in zip(rows["method_a"], rows["method_b"])]
    same = (rows["seed_a"] == rows["seed_b"]).fillna(False).astype(bool)
    rows["panel"] = np.where(same, "same seed (same initialisation)", "different seeds")
    names = list(dict.fromkeys(_pair_name(*sorted((a, b), key=rank.get)) for a in methods for b in methods
                               if rank[a] <= rank[b]))
    names = [n for n in names if n in set(rows["pair"])]
    colour = dict(zip(names, palette(len(names))))
    panels = [p for p in ("same seed (same initialisation)", "different seeds") if p in set(rows["panel"])]
    fig = new_figure(4.2 * len(panels) + 2.8, 4.2)
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    for ax, panel in zip(axes, panels):
        part = rows[rows["panel"] == panel]
        for name in names:
            r = part[part["pair"] == name]
            if r.empty:
                continue
            g = r.groupby("level")["jaccard"]
            n = r[["a", "b"]].drop_duplicates().shape[0]
            ax.plot(g.mean().index, g.mean().to_numpy(), marker="o", ms=3.5, lw=1.6, color=colour[name],
                    label=f"{name} ({n} pair{'s' if n != 1 else ''})")
            if n > 1:
                ax.fill_between(g.min().index, g.min().to_numpy(), g.max().to_numpy(), color=colour[name],
                                alpha=0.18, lw=0)
        e = part.groupby("level")["expected_jaccard"].mean()
        ax.plot(e.index, e.to_numpy(), color="black", ls="--", lw=1.1, label="_chance")
        ax.set_title(panel, fontsize=9)
        finish(ax)
    axes[0].set_ylabel(JACCARD_LABEL)
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles + [chance], labels + [chance_label + "; mean"], fontsize=8, loc="outside right upper",
               frameon=False, title="methods (mean over pairs;\nband: min–max)", title_fontsize=8)
    fig.suptitle(title if title is not None else f"Jaccard of pairs of runs ({what})", fontsize=10)
    return fig


__all__ = ["jaccard_heatmap", "jaccard_vs_level"]
