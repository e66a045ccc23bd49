"""Layer-wise density per level: a heatmap (layers × levels) and one line per layer."""

from __future__ import annotations

from typing import Any

import pandas as pd

from ticketlab.errors import ConfigError
from ticketlab.plots._style import (DENSITY_LABEL, LEVEL_LABEL, SEQUENTIAL, fmt_number, legend_outside, new_figure,
                                    nice_ticks, palette, require_columns)


def _one_run(layers: pd.DataFrame, run: str | None, what: str) -> tuple[pd.DataFrame, str | None]:
    """The rows of one run (default the first in the frame) and its label."""
    if "run" not in layers.columns:
        return layers, run
    runs = list(dict.fromkeys(layers["run"]))
    if run is None:
        run = runs[0]
    elif run not in runs:
        raise ConfigError(f"{what}: no run {run!r} in the frame; runs: {', '.join(map(str, runs))}")
    return layers[layers["run"] == run], run


def _pivot(layers: pd.DataFrame) -> pd.DataFrame:
    order = list(dict.fromkeys(layers["layer"]))
    p = layers.pivot_table(index="layer", columns="level", values="density", aggfunc="mean")
    return p.reindex(order)


def layer_density_heatmap(layers: pd.DataFrame, *, run: str | None = None, annotate: bool | None = None,
                          title: str | None = None) -> Any:
    """Density of every layer (rows, model order) at every level (columns), on a log colour scale.

    Parameters
    ----------
    layers : pandas.DataFrame
        One row per (level, layer), as :meth:`TicketFile.layer_summary` or :func:`ticketlab.frames.layers_frame`
        return: needs ``level``, ``layer``, ``density``.
    run : str, optional
        With several runs in the frame (a ``run`` column), the one to draw; default the first.
    annotate : bool, optional
        Write each cell's density in it; default when there are at most 400 cells.
    title : str, optional
        Default: the run's label.

    Returns
    -------
    matplotlib.figure.Figure
        Fully pruned layers (density 0) are grey; the colour bar is the density on a log scale.
    """
    import seaborn as sns
    from matplotlib.colors import LogNorm
    import matplotlib

    require_columns(layers, ["level", "layer", "density"], "layer_density_heatmap")
    layers, run = _one_run(layers, run, "layer_density_heatmap")
    p = _pivot(layers)
    n_layers, n_levels = p.shape
    positive = p.to_numpy()[p.to_numpy() > 0]
    vmin = float(positive.min()) if positive.size else 1e-3
    vmin = min(vmin, 0.5)
    annotate = (p.size <= 400) if annotate is None else annotate
    longest = max((len(str(x)) for x in p.index), default=5)
    fig = new_figure(min(2.2 + 0.07 * longest + 0.55 * n_levels, 16), min(1.4 + 0.34 * n_layers, 14))
    ax = fig.add_subplot()
    # density 0 has no place on a log scale: LogNorm masks it, and masked cells take the 'bad' colour (grey)
    cmap = matplotlib.colormaps[SEQUENTIAL].with_extremes(bad="#d9d9d9")
    data = p
    text = p.map(lambda v: "" if pd.isna(v) else ("0" if v == 0 else f"{v:.2g}")) if annotate else False
    sns.heatmap(data, ax=ax, cmap=cmap, norm=LogNorm(vmin=vmin, vmax=1.0), annot=text if annotate else False,
                fmt="", annot_kws={"fontsize": 7}, linewidths=0.5, linecolor="white",
                cbar_kws={"label": "density (log scale)", "ticks": nice_ticks(vmin, 1.0, (1, 5))})
    cbar = ax.collections[0].colorbar
    from matplotlib.ticker import FuncFormatter, NullFormatter

    cbar.ax.yaxis.set_major_formatter(FuncFormatter(fmt_number))
    cbar.ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(LEVEL_LABEL)
    ax.set_ylabel("layer (parameter)")
    ax.tick_params(axis="y", labelsize=8, rotation=0)
    ax.tick_params(axis="x", rotation=0)
    ax.set_title(title if title is not None else (run or ""), fontsize=10)
    return fig


def layer_density_lines(layers: pd.DataFrame, *, run: str | None = None, log: bool = True,
                        title: str | None = None) -> Any:
    """One line per layer: density against level, with the whole model's density (pooled over layers) dashed.

    Parameters
    ----------
    layers : pandas.DataFrame
        As for :func:`layer_density_heatmap`; ``size`` and ``kept`` (when present) give the pooled total.
    run : str, optional
        The run to draw (default the first in the frame).
    log : bool
        Log-scaled density axis (default).
    title : str, optional
        Default: the run's label.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullFormatter

    require_columns(layers, ["level", "layer", "density"], "layer_density_lines")
    layers, run = _one_run(layers, run, "layer_density_lines")
    names = list(dict.fromkeys(layers["layer"]))
    fig = new_figure(7.2, 4.2)
    ax = fig.add_subplot()
    for name, c in zip(names, palette(len(names))):
        r = layers[layers["layer"] == name].sort_values("level")
        d = r["density"].where(r["density"] > 0) if log else r["density"]
        ax.plot(r["level"], d, marker="o", ms=3, lw=1.4, color=c, label=name)
    if {"kept", "size"} <= set(layers.columns):
        tot = layers.groupby("level")[["kept", "size"]].sum()
        ax.plot(tot.index, tot["kept"] / tot["size"], color="black", ls="--", lw=1.8, label="all layers (pooled)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(LEVEL_LABEL)
    ax.set_ylabel(DENSITY_LABEL)
    if log:
        ax.set_yscale("log")
        d = layers["density"][layers["density"] > 0]
        ticks = nice_ticks(float(d.min()), 1.0) if len(d) else []
        if len(ticks) >= 2:
            ax.yaxis.set_major_locator(FixedLocator(ticks))
            ax.yaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_major_formatter(FuncFormatter(fmt_number))
    ax.grid(True, alpha=0.3)
    ax.set_title(title if title is not None else (run or ""), fontsize=10)
    legend_outside(ax, title="layer")
    return fig


__all__ = ["layer_density_heatmap", "layer_density_lines"]
