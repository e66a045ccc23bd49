"""Accuracy (or early-stopping iteration) against density: the figure of every lottery-ticket paper.

The x axis is the density on a log scale, dense on the left and sparse on the right (as in Frankle & Carbin
2019), with the compression ratio (total / kept) on the top axis. One line per method (its own colour and
marker), with a band over the seeds; control branches (``reinit``, ``shuffle``, ``random``) are lines of their
own in their method's colour and marker, dashed, dotted or dash-dotted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd

from ticketlab.errors import ConfigError
from ticketlab.registry import Registry
from ticketlab.plots._style import (ACCURACY_LABEL, CONTROL_STYLES, EARLY_STOP_LABEL, density_axis, legend_outside,
                                    new_figure, palette, require_columns)



@dataclass(frozen=True)
class Band:
    """What the band around a line's mean over seeds shows.

    Attributes
    ----------
    legend : str or None
        The legend's title when bands are drawn (None: no band).
    bounds : callable or None
        ``bounds(values grouped by level, mean) -> (low, high)``; None draws no band.
    help : str
        One line for ``--help``.
    """

    legend: str | None
    bounds: Callable[[Any, Any], tuple[Any, Any]] | None
    help: str


def _sd_bounds(g: Any, mean: Any) -> tuple[Any, Any]:
    sd = g.std(ddof=1).fillna(0.0)
    return mean - sd, mean + sd


#: The bands :func:`metric_vs_density` can draw, by name.
BANDS: Registry[Band] = Registry("band")
BANDS.register("range", Band("bands: min–max over seeds", lambda g, mean: (g.min(), g.max()), "min-max range"))
BANDS.register("sd", Band("bands: ±1 sd over seeds", _sd_bounds, "+-1 sd"))
BANDS.register("none", Band(None, None, "no band"))
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def _seeds_text(seeds: pd.Series) -> str:
    values = sorted({int(s) for s in seeds.dropna()})
    if not values:
        return f"{seeds.size} run" + ("s" if seeds.size != 1 else "")
    return ("seed " if len(values) == 1 else "seeds ") + ", ".join(map(str, values))


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v))


def metric_vs_density(runs: pd.DataFrame, y: str = "accuracy", *, per_run: bool = False, band: str = "range",
                      ylabel: str | None = None, title: str | None = None, ax: Any = None) -> Any:
    """A per-level quantity of runs against density, one line per method (and control), bands over seeds.

    Parameters
    ----------
    runs : pandas.DataFrame
        Tidy, one row per run and level (and control branch), as :func:`ticketlab.frames.runs_frame` returns:
        needs ``density``, ``y``, ``level``, ``run`` and either ``line`` or ``method`` (+ optional ``branch``);
        ``seed`` is used in legend entries.
    y : str
        The column on the y axis, e.g. ``"accuracy"`` or ``"early_stop_iteration"``.
    per_run : bool
        Draw every run (seed) as its own line instead of the mean over seeds with a band.
    band : {"range", "sd", "none"}
        What the band around the mean over seeds shows: the min–max range (default; honest for a few seeds),
        ± one standard deviation, or nothing.
    ylabel, title : str, optional
    ax : matplotlib Axes, optional
        Draw into these axes instead of a new figure.

    Returns
    -------
    matplotlib.figure.Figure
    """
    shade = BANDS.get(band)
    require_columns(runs, ["density", y, "level", "run"], "metric_vs_density")
    frame = runs.copy()
    if "line" not in frame.columns:
        require_columns(frame, ["method"], "metric_vs_density")
        branch = frame["branch"] if "branch" in frame.columns else pd.Series([None] * len(frame), index=frame.index)
        frame["line"] = [m if _is_missing(b) else f"{m} / {b}" for m, b in zip(frame["method"], branch)]
    if "branch" not in frame.columns:
        frame["branch"] = None
    frame[y] = pd.to_numeric(frame[y], errors="coerce")
    frame = frame[frame[y].notna() & (frame["density"] > 0)]
    if frame.empty:
        raise ConfigError(f"no level has a value of {y!r} to plot (no evaluations in the files?)")
    if "seed" not in frame.columns:
        frame["seed"] = np.nan

    fig = new_figure(7.2, 4.2) if ax is None else ax.figure
    ax = fig.add_subplot() if ax is None else ax
    lines = list(dict.fromkeys(frame["line"]))
    # one colour per method (a line without its control suffix), one style per control
    base = {ln: ln.split(" / ")[0] for ln in lines}
    bases = list(dict.fromkeys(base.values()))
    colour = dict(zip(bases, palette(len(bases))))
    marker = {b: _MARKERS[i % len(_MARKERS)] for i, b in enumerate(bases)}  # lines that coincide stay visible
    for ln in lines:
        part = frame[frame["line"] == ln]
        b = part["branch"].dropna()
        style = CONTROL_STYLES.get(str(b.iloc[0]), (0, (5, 1, 1, 1))) if len(b) else "-"
        c = colour[base[ln]]
        if per_run:
            for k, (run, r) in enumerate(part.groupby("run", sort=False)):
                r = r.sort_values("level")
                seed = r["seed"].iloc[0]
                label = f"{ln}, seed {int(seed)}" if not _is_missing(seed) else f"{ln} ({run})"
                ax.plot(r["density"], r[y], ls=style, color=c, marker=_MARKERS[k % len(_MARKERS)], ms=4, lw=1.4,
                        label=label)
            continue
        g = part.groupby("level", sort=True)
        x = g["density"].mean()
        mean = g[y].mean()
        ax.plot(x.to_numpy(), mean.to_numpy(), ls=style, color=c, marker=marker[base[ln]], ms=4, lw=1.6,
                label=f"{ln} ({_seeds_text(part.drop_duplicates('run')['seed'])})")
        if shade.bounds is not None and part["run"].nunique() > 1:
            lo, hi = shade.bounds(g[y], mean)
            ax.fill_between(x.to_numpy(), lo.to_numpy(), hi.to_numpy(), color=c, alpha=0.18, lw=0)
    density_axis(ax, frame["density"].to_numpy())
    ax.set_ylabel(ylabel or {"accuracy": ACCURACY_LABEL, "early_stop_iteration": EARLY_STOP_LABEL}.get(y, y))
    if y in ("early_stop_iteration", "iterations", "level"):
        from matplotlib.ticker import MaxNLocator

        ax.yaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 2.5, 5, 10]))
    ax.grid(True, which="major", alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    note = shade.legend
    banded = not per_run and note is not None and frame.groupby("line")["run"].nunique().max() > 1
    legend_outside(ax, title=note if banded else None)
    return fig


def accuracy_vs_density(runs: pd.DataFrame, **kwargs: Any) -> Any:
    """Test accuracy (fraction) against density, one line per method and control, bands over seeds.

    Parameters
    ----------
    runs : pandas.DataFrame
        As :func:`ticketlab.frames.runs_frame` returns (one row per run, level and branch).
    **kwargs
        See :func:`metric_vs_density` (``per_run``, ``band``, ``title``, ``ax``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    return metric_vs_density(runs, "accuracy", **kwargs)


def early_stop_vs_density(runs: pd.DataFrame, **kwargs: Any) -> Any:
    """Early-stopping iteration (the iteration of minimum validation loss, Frankle & Carbin 2019) against density.

    Parameters
    ----------
    runs : pandas.DataFrame
        As :func:`ticketlab.frames.runs_frame` returns; rows without an early-stopping iteration are left out.
    **kwargs
        See :func:`metric_vs_density`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    return metric_vs_density(runs, "early_stop_iteration", **kwargs)
