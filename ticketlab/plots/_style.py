"""Shared look of ticketlab's figures: new figures, the palette, axis labels and saving.

Figures are :class:`matplotlib.figure.Figure` objects made without pyplot, so plotting never selects or changes
matplotlib's global backend and never opens a window; saving picks the canvas for the file's format (Agg for
PNG, the PDF and SVG backends for those).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ticketlab.errors import ConfigError
from ticketlab.outputs import atomic_output

#: seaborn's "colorblind" palette (Wong 2011 / Okabe–Ito-like), as hex; copied so that importing ticketlab.plots
#: does not import seaborn.
COLORBLIND = ("#0173b2", "#de8f05", "#029e73", "#d55e00", "#cc78bc", "#ca9161", "#fbafe4", "#949494", "#ece133",
              "#56b4e9")
#: Sequential colour map for heatmaps and for more than ten lines (perceptually uniform, colour-blind safe).
SEQUENTIAL = "viridis"
#: Line style of each control branch; the main line of a method is solid.
CONTROL_STYLES = {"reinit": "--", "shuffle": ":", "random": "-."}
#: File formats :func:`save_figure` writes, by suffix.
FORMATS = ("png", "pdf", "svg")

# Axis labels, in the vocabulary of docs/conventions.md.
DENSITY_LABEL = "density (fraction of weights kept)"
COMPRESSION_LABEL = "compression (total / kept weights)"
ACCURACY_LABEL = "test accuracy (fraction)"
EARLY_STOP_LABEL = "early-stopping iteration (min. validation loss)"
LEVEL_LABEL = "level (pruning steps; 0 = dense)"
JACCARD_LABEL = "Jaccard (|A∩B| / |A∪B|)"


def new_figure(width: float = 6.4, height: float = 4.0) -> Any:
    """A new :class:`matplotlib.figure.Figure` with an Agg canvas attached (no pyplot, no global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def palette(n: int) -> list[str]:
    """``n`` colours: the colour-blind-safe qualitative palette for up to 10, viridis samples beyond."""
    if n <= len(COLORBLIND):
        return list(COLORBLIND[:n])
    import matplotlib
    from matplotlib.colors import to_hex

    cmap = matplotlib.colormaps[SEQUENTIAL]
    return [to_hex(cmap(x)) for x in np.linspace(0, 0.92, n)]


def nice_ticks(low: float, high: float, steps: Sequence[float] = (1, 2, 5)) -> list[float]:
    """Round ticks (1-2-5 per decade) covering [low, high], for log-scaled axes of fractions or ratios."""
    if not (low > 0 and high > 0 and math.isfinite(low) and math.isfinite(high)):
        return []
    low, high = min(low, high), max(low, high)
    out = []
    for e in range(math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 1):
        for s in steps:
            v = s * 10.0 ** e
            if low * (1 - 1e-9) <= v <= high * (1 + 1e-9):
                out.append(float(f"{v:.12g}"))
    return out


def fmt_number(v: float, _pos: Any = None) -> str:
    """Ticks as short decimals: 1, 0.5, 0.02."""
    return f"{v:g}"


def density_axis(ax: Any, densities: Sequence[float], *, compression: bool = True) -> None:
    """Log-scaled density x axis, decreasing from left to right (the sparse end on the right, as in the
    lottery-ticket papers), with round ticks and, when ``compression``, the compression ratio on a top axis."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    d = np.asarray([x for x in densities if x is not None and np.isfinite(x) and x > 0], dtype=float)
    ax.set_xscale("log")
    if d.size:
        lo, hi = float(d.min()), float(d.max())
        pad = (hi / lo) ** 0.04 if hi > lo else 1.25
        ax.set_xlim(hi * pad, lo / pad)  # inverted: dense on the left
        ticks = nice_ticks(lo / pad, hi * pad)
        if len(ticks) >= 2:
            ax.xaxis.set_major_locator(FixedLocator(ticks))
            ax.xaxis.set_minor_formatter(NullFormatter())
    ax.xaxis.set_major_formatter(FuncFormatter(fmt_number))
    ax.set_xlabel(DENSITY_LABEL)
    if compression:
        top = ax.secondary_xaxis("top", functions=(_reciprocal, _reciprocal))
        top.set_xlabel(COMPRESSION_LABEL)
        if d.size:
            lo, hi = float(d.min()), float(d.max())
            cticks = nice_ticks(1 / hi, 1 / lo)
            if len(cticks) >= 2:
                top.xaxis.set_major_locator(FixedLocator(cticks))
        top.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}×"))
        top.xaxis.set_minor_formatter(NullFormatter())


def _reciprocal(x: Any) -> Any:
    x = np.asarray(x, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x > 0, 1.0 / np.where(x > 0, x, 1.0), np.inf)


def figure_format(path: str | Path) -> tuple[Path, str]:
    """The path and format (``"png"``, ``"pdf"`` or ``"svg"``, from the suffix) of a figure file to write.

    Raises :class:`ConfigError` for another suffix or a directory that does not exist, so that a command can
    refuse a bad ``--out`` before drawing anything.
    """
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ConfigError(f"cannot tell the figure format from {path.name!r}; use a file name ending in "
                          + ", ".join(f".{f}" for f in FORMATS))
    if not path.parent.exists():
        raise ConfigError(f"{path}: directory {path.parent} does not exist")
    return path, fmt


def save_figure(fig: Any, path: str | Path, *, dpi: int = 200) -> Path:
    """Save a figure as PNG, PDF or SVG (chosen by the file's suffix).

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    path : path-like
        Ends in ``.png``, ``.pdf`` or ``.svg``.
    dpi : int
        Resolution of PNG output (dots per inch); vector formats ignore it for their lines and text.

    Returns
    -------
    Path
        The path written.
    """
    path, fmt = figure_format(path)
    # metadata: no 'Software'/'Creator' string (PNG's holds a URL); dates left out so outputs are reproducible
    meta = {"png": {"Software": None}, "pdf": {"Creator": None, "Producer": None, "CreationDate": None},
            "svg": {"Creator": None, "Date": None}}[fmt]
    with atomic_output(path, tag="figure") as tmp:  # a reader never sees a half-written figure
        fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight", metadata=meta)
    return path


def legend_outside(ax: Any, *, title: str | None = None, fontsize: float = 8) -> Any:
    """A legend to the right of the axes (it never hides data)."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return None
    return ax.legend(handles, labels, title=title, fontsize=fontsize, title_fontsize=fontsize,
                     loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False)


def require_columns(frame: Any, columns: Sequence[str], what: str) -> None:
    """Raise :class:`ConfigError` naming the first missing column of a frame passed to a plot function."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ConfigError(f"{what} needs a frame with column(s) {', '.join(map(repr, missing))}; got columns "
                          f"{', '.join(map(str, frame.columns)) or 'none'}")
    if len(frame) == 0:
        raise ConfigError(f"{what}: the frame has no rows")
