"""Structure in unstructured masks: the kept fraction of each conv kernel, and fully pruned units vs chance."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ticketlab.errors import ConfigError
from ticketlab.plots._style import SEQUENTIAL, legend_outside, new_figure, palette, require_columns

#: Colour of fully pruned kernels, rows and columns: vermillion, distinct from every viridis colour.
PRUNED_COLOUR = "#d55e00"
#: Legend names of :func:`ticketlab.analysis.structure.group_structure`'s groupings.
GROUPING_NAMES = {"output": "output units / filters", "input": "input units / channels", "kernel": "conv kernels"}


def kernel_fractions(mask: np.ndarray) -> np.ndarray:
    """Kept fraction of each (output, input) kernel of a weight mask.

    Parameters
    ----------
    mask : ndarray of bool, shape (out, in, *kernel) or (out, in)
        A conv or linear weight mask (``True`` = kept).

    Returns
    -------
    ndarray of float, shape (out, in)
        kept / (kh · kw) per kernel; for a linear mask each "kernel" is one weight (0 or 1).
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim < 2:
        raise ConfigError(f"a kernel heatmap needs a 2-D or conv mask; got shape {list(mask.shape)}")
    return mask.reshape(mask.shape[0], mask.shape[1], -1).mean(axis=2)


def kernel_heatmap(mask: np.ndarray, *, layer: str | None = None, conv: bool | None = None,
                   title: str | None = None) -> Any:
    """Kept fraction of each (output, input) kernel of one layer, with fully pruned rows and columns marked.

    Parameters
    ----------
    mask : ndarray of bool, shape (out, in, kh, kw) or (out, in)
        One layer's mask (e.g. ``TicketFile.mask(level, name)``).
    layer : str, optional
        The layer's name, for the title.
    conv : bool, optional
        Whether to name axes as channels and filters (default: ``mask.ndim > 2``) or units.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
        Rows are output channels (filters), columns input channels. Conv: the kept fraction of each kernel in
        viridis with a colour bar (from 0 to the largest fraction, rounded up to a tenth), fully pruned kernels
        in vermillion, fully pruned rows (filters) and columns (input channels) outlined in black. Linear: kept
        weights black on white, fully pruned units as vermillion bands. The title counts them.
    """
    import matplotlib
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch, Rectangle

    frac = kernel_fractions(mask)
    conv = np.asarray(mask).ndim > 2 if conv is None else conv
    n_out, n_in = frac.shape
    empty_rows = np.flatnonzero(frac.sum(axis=1) == 0)
    empty_cols = np.flatnonzero(frac.sum(axis=0) == 0)
    # square cells unless the layer is very elongated (e.g. a 300 x 784 linear layer); the longer side ~6 in
    cell = min(0.4, 6.0 / max(n_out, n_in))
    square = 1 / 8 <= n_out / max(n_in, 1) <= 8
    ax_w, ax_h = (n_in * cell, n_out * cell) if square else (6.0, 4.0)
    fig = new_figure(max(ax_w + 2.6, 5.5), ax_h + 1.9)
    ax = fig.add_subplot()
    aspect = "equal" if square else "auto"
    unit_out, unit_in = ("output channel (filter)", "input channel") if conv else ("output unit", "input unit")
    handles = []
    if conv:
        # kept fraction in viridis; empty kernels (and so fully pruned rows and columns) in vermillion
        # colour scale up to the largest kept fraction (rounded up to a tenth): sparse layers keep a few percent
        # of each kernel, which a fixed 0-1 scale would show as one dark colour
        vmax = min(1.0, max(0.1, float(np.ceil(frac.max() * 10) / 10)))
        img = ax.imshow(np.ma.masked_where(frac == 0, frac), cmap=matplotlib.colormaps[SEQUENTIAL], vmin=0,
                        vmax=vmax, aspect=aspect, interpolation="nearest")
        ax.imshow(np.ma.masked_where(frac != 0, np.ones_like(frac)), cmap=ListedColormap([PRUNED_COLOUR]),
                  aspect=aspect, interpolation="nearest")
        fig.colorbar(img, ax=ax, shrink=0.85).set_label("kept fraction of the kernel")
        if (frac == 0).any():
            handles.append(Patch(color=PRUNED_COLOUR, label="fully pruned kernel"))
        for r in empty_rows:
            ax.add_patch(Rectangle((-0.5, r - 0.5), n_in, 1, fill=False, ec="black", lw=1.2))
        for c in empty_cols:
            ax.add_patch(Rectangle((c - 0.5, -0.5), 1, n_out, fill=False, ec="black", lw=1.2))
        if len(empty_rows) or len(empty_cols):
            handles.append(Patch(fill=False, ec="black", label="fully pruned filter / input channel"))
    else:
        # one weight per cell: kept black on white; fully pruned units as vermillion bands (a white line of
        # one pixel would be invisible)
        ax.imshow(frac > 0, cmap=ListedColormap(["white", "black"]), vmin=0, vmax=1, aspect=aspect,
                  interpolation="nearest")
        for r in empty_rows:
            ax.axhspan(r - 0.5, r + 0.5, color=PRUNED_COLOUR, alpha=0.6, lw=0)
        for c in empty_cols:
            ax.axvspan(c - 0.5, c + 0.5, color=PRUNED_COLOUR, alpha=0.6, lw=0)
        handles.append(Patch(color="black", label="kept weight"))
        if len(empty_rows) or len(empty_cols):
            handles.append(Patch(color=PRUNED_COLOUR, alpha=0.6, label="fully pruned output / input unit"))
    ax.set_xlabel(unit_in)
    ax.set_ylabel(unit_out)
    if handles:
        fig.legend(handles=handles, fontsize=7, loc="outside lower left", ncol=2, frameon=False)
    outs, ins = ("filters", "input channels") if conv else ("output units", "input units")
    head = f"{layer}: " if layer else ""
    default = (f"{head}{len(empty_rows)} of {n_out} {outs} and {len(empty_cols)} of {n_in} {ins} fully pruned; "
               f"{int((frac == 0).sum()):,} of {frac.size:,} kernels empty" if conv else
               f"{head}{len(empty_rows)} of {n_out} {outs} and {len(empty_cols)} of {n_in} {ins} fully pruned")
    ax.set_title(title if title is not None else default, fontsize=9, wrap=True)
    return fig


def fully_pruned_plot(structure: pd.DataFrame, *, run: str | None = None, title: str | None = None) -> Any:
    """Fraction of fully pruned units, channels and kernels per layer, beside the random-placement expectation.

    Parameters
    ----------
    structure : pandas.DataFrame
        :func:`ticketlab.analysis.structure.group_structure`'s frame (or :func:`ticketlab.frames.structure_frame`'s):
        needs ``layer``, ``grouping``, ``fully_pruned_fraction``, ``expected_fully_pruned_fraction`` and
        ``expected_fully_pruned_sd``.
    run : str, optional
        With several runs in the frame, the one to draw (default the first).
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
        Bars: observed fraction of fully pruned groups per layer and grouping; black diamonds with error bars:
        the mean ± 2 sd of that fraction if the layer's kept weights were placed uniformly at random.
    """
    require_columns(structure, ["layer", "grouping", "fully_pruned_fraction", "expected_fully_pruned_fraction",
                                "expected_fully_pruned_sd"], "fully_pruned_plot")
    if "run" in structure.columns:
        runs = list(dict.fromkeys(structure["run"]))
        run = runs[0] if run is None else run
        if run not in runs:
            raise ConfigError(f"fully_pruned_plot: no run {run!r} in the frame; runs: {', '.join(map(str, runs))}")
        structure = structure[structure["run"] == run]
    layers = list(dict.fromkeys(structure["layer"]))
    groupings = [g for g in GROUPING_NAMES if g in set(structure["grouping"])]
    fig = new_figure(min(3.5 + 1.1 * len(layers), 14), 4.2)
    ax = fig.add_subplot()
    width = 0.8 / max(len(groupings), 1)
    x = np.arange(len(layers))
    expected = []
    for k, (g, c) in enumerate(zip(groupings, palette(len(groupings)))):
        r = structure[structure["grouping"] == g].set_index("layer").reindex(layers)
        pos = x - 0.4 + width * (k + 0.5)
        ax.bar(pos, r["fully_pruned_fraction"], width * 0.92, color=c, label=GROUPING_NAMES[g])
        ok = r["expected_fully_pruned_fraction"].notna().to_numpy()
        expected.append((pos[ok], r["expected_fully_pruned_fraction"][ok], 2 * r["expected_fully_pruned_sd"][ok]))
    for k, (pos, mean, err) in enumerate(expected):  # after the bars, so that the legend lists the bars first
        ax.errorbar(pos, mean, yerr=err, fmt="D", ms=4, color="black", mfc="white", capsize=2, lw=1,
                    label="random placement (mean ± 2 sd)" if k == 0 else "_nolegend_")
    ax.set_xticks(x)
    ax.set_xticklabels(layers, rotation=30 if len(layers) > 3 else 0, ha="right" if len(layers) > 3 else "center",
                       fontsize=8)
    ax.set_ylabel("fully pruned groups (fraction)")
    ax.set_xlabel("layer")
    top = np.nanmax(np.concatenate([structure["fully_pruned_fraction"].to_numpy(float),
                                    (structure["expected_fully_pruned_fraction"]
                                     + 2 * structure["expected_fully_pruned_sd"]).to_numpy(float), [0.0]]))
    ax.set_ylim(0, min(1.05, max(0.05, 1.15 * float(top))))
    ax.grid(True, axis="y", alpha=0.3)
    level = f" at level {structure['level'].iloc[0]}" if "level" in structure.columns else ""
    ax.set_title(title if title is not None else f"{run + ': ' if run else ''}fully pruned groups{level}",
                 fontsize=10)
    legend_outside(ax)
    return fig


__all__ = ["kernel_fractions", "kernel_heatmap", "fully_pruned_plot"]
