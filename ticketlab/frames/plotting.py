"""Figures of ticket files: load a plot kind's tidy input with the frames, then draw it.

The kinds are the registry :data:`ticketlab.plots.PLOTS`; each names its input, and :data:`LOADERS` reads that
input from ``FILE[:LEVEL]`` specs. This is what ``ticketlab plot`` calls::

    from ticketlab.frames import plot_files
    fig = plot_files("overlap", ["rewind_s0.h5:8", "rewind_s1.h5:8"])
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from ticketlab.errors import ConfigError
from ticketlab.frames.fairness import fairness_frames
from ticketlab.frames.files import opened
from ticketlab.frames.overlap import level_overlap_frame, overlap_frame
from ticketlab.frames.runs import layers_frame, runs_frame
from ticketlab.frames.structure import layer_mask, structure_frame
from ticketlab.plots.kinds import PlotKind, get_plot
from ticketlab.registry import Registry
from ticketlab.store import parse_spec

#: How each plot input (:data:`ticketlab.plots.kinds.INPUTS`) is read: ``loader(kind, specs, options) -> data``
#: (a test checks that every input has a loader).
LOADERS: Registry[Callable[[PlotKind, Sequence[str], dict[str, Any]], Any]] = Registry("plot input")


def _paths(kind: PlotKind, specs: Sequence[str]) -> list[str]:
    out = []
    for spec in specs:
        path, level = parse_spec(spec)
        if level is not None and kind.levels == "all":
            raise ConfigError(f"plot {kind.name!r} shows every level of each file, but {spec!r} names one; "
                              "drop ':LEVEL'")
        out.append(str(path))
    return out


def _one(specs: Sequence[str], level: int | None) -> tuple[str, int | None]:
    path, own = parse_spec(specs[0])
    return str(path), own if own is not None else level


LOADERS.register("runs", lambda k, specs, o: runs_frame(_paths(k, specs)))
LOADERS.register("layers", lambda k, specs, o: layers_frame(_paths(k, specs)))
LOADERS.register("level-overlap", lambda k, specs, o: level_overlap_frame(_paths(k, specs)))
# one population per figure: files of several methods are refused, naming them (fairness_frames)
LOADERS.register("fairness", lambda k, specs, o: fairness_frames(list(specs), level=o["level"],
                                                                 what=f"plot {k.name!r}"))


@LOADERS.register("overlap")
def _overlap(kind: PlotKind, specs: Sequence[str], o: dict[str, Any]) -> Any:
    parsed = [parse_spec(s) for s in specs]
    if len(parsed) == 1 and parsed[0][1] is None and o["level"] is None:  # one file: every level of it
        with opened([parsed[0][0]]) as (t,):
            entries = [(parsed[0][0], lv) for lv in t.levels]
    else:
        entries = [(p, own if own is not None else o["level"]) for p, own in parsed]
    return overlap_frame(entries)


@LOADERS.register("layer-mask")
def _layer_mask(kind: PlotKind, specs: Sequence[str], o: dict[str, Any]) -> Any:
    path, level = _one(specs, o["level"])
    return layer_mask(path, level=level, layer=o["layer"])


@LOADERS.register("structure")
def _structure(kind: PlotKind, specs: Sequence[str], o: dict[str, Any]) -> Any:
    path, level = _one(specs, o["level"])
    return structure_frame([path], level=level)


def plot_files(kind: str, files: Sequence[str], *, level: int | None = None, layer: str | None = None,
               per_run: bool = False, band: str = "range", title: str | None = None) -> Any:
    """Draw one kind of figure from ticket files.

    Parameters
    ----------
    kind : str
        One of :func:`ticketlab.plots.list_plots` (see ``ticketlab plot --help`` for what each shows).
    files : sequence of str
        ``FILE`` or ``FILE:LEVEL`` specs.
    level : int, optional
        The level for kinds that show one (default: the last; for several files, the last common level).
    layer : str, optional
        The layer for ``kernels`` (default: the conv layer with the most kernels) and the overlap kinds
        (default: all layers pooled).
    per_run : bool
        ``accuracy``/``early-stop``: one line per run instead of a mean with a band over seeds.
    band : {"range", "sd", "none"}
        ``accuracy``/``early-stop``: what the band over seeds shows.
    title : str, optional
        Replaces the default title, where the figure has one.

    Returns
    -------
    matplotlib.figure.Figure
    """
    k = get_plot(kind)
    files = list(files)
    if len(files) < k.min_files:
        raise ConfigError(f"plot {k.name!r} needs at least {k.min_files} ticket file"
                          f"{'s' if k.min_files > 1 else ''}; got {len(files)}")
    if k.max_files and len(files) > k.max_files:
        raise ConfigError(f"plot {k.name!r} draws {'one file' if k.max_files == 1 else f'{k.max_files} files'}; "
                          f"got {len(files)}")
    options = {"level": level, "layer": layer, "per_run": per_run, "band": band, "title": title}
    return k.draw(LOADERS.get(k.input)(k, files, options), options)


__all__ = ["LOADERS", "plot_files"]
