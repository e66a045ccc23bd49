"""The figures ``ticketlab plot KIND FILES...`` draws from ticket files: a registry of plot kinds.

Each kind reads the files through :mod:`ticketlab.plots.frames` and calls one plotting function::

    from ticketlab.plots import plot_files, save_figure
    fig = plot_files("accuracy", ["rewind_s0.h5", "rewind_s1.h5", "finetune_s0.h5"])
    save_figure(fig, "accuracy.pdf")

Files are given as ``FILE`` or ``FILE:LEVEL`` (the syntax of the analysis commands); kinds that show every
level refuse ``:LEVEL``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ticketlab.errors import ConfigError


@dataclass(frozen=True)
class PlotKind:
    """One kind of figure drawn from ticket files.

    Attributes
    ----------
    name : str
        Registry name (the ``KIND`` of ``ticketlab plot``).
    func : callable
        ``func(specs, options) -> Figure``; ``specs`` are ``FILE[:LEVEL]`` strings, ``options`` a dict with
        ``level``, ``layer``, ``per_run``, ``band`` and ``title``.
    description : str
        One line for ``--help``.
    min_files, max_files : int
        How many files the kind takes (``max_files`` 0 = any number).
    levels : str
        ``"all"`` (every level; ``:LEVEL`` refused), ``"one"`` (one level per file) or ``"pruned"`` (every level,
        plus one pruned level for the level-specific panels).
    """

    name: str
    func: Callable[[Sequence[str], dict[str, Any]], Any]
    description: str
    min_files: int = 1
    max_files: int = 0
    levels: str = "all"


#: All plot kinds by name, in the order ``ticketlab plot --help`` lists them; filled by :func:`register_plot`.
PLOTS: dict[str, PlotKind] = {}


def register_plot(name: str, *, description: str, min_files: int = 1, max_files: int = 0,
                  levels: str = "all") -> Callable:
    """Decorator adding ``func(specs, options) -> Figure`` to :data:`PLOTS`."""
    if levels not in ("all", "one", "pruned"):
        raise ConfigError(f"levels must be 'all', 'one' or 'pruned'; got {levels!r}")

    def decorate(func: Callable) -> Callable:
        if name in PLOTS:
            raise ConfigError(f"plot kind {name!r} is already registered")
        PLOTS[name] = PlotKind(name, func, description, min_files, max_files, levels)
        return func

    return decorate


def get_plot(name: str) -> PlotKind:
    """The registered plot kind ``name``; raises :class:`ConfigError` listing the valid names."""
    try:
        return PLOTS[name]
    except KeyError:
        raise ConfigError(f"unknown plot kind {name!r}; choose one of: {', '.join(list_plots())}") from None


def list_plots() -> list[str]:
    """Names of the registered plot kinds, in registration order."""
    return list(PLOTS)


def _paths(kind: PlotKind, specs: Sequence[str]) -> list[str]:
    from ticketlab.cli._select import parse_spec

    out = []
    for spec in specs:
        path, level = parse_spec(spec)
        if level is not None and kind.levels == "all":
            raise ConfigError(f"plot {kind.name!r} shows every level of each file, but {spec!r} names one; "
                              "drop ':LEVEL'")
        out.append(str(path))
    return out


def _one(kind: PlotKind, specs: Sequence[str], level: int | None) -> tuple[str, int | None]:
    from ticketlab.cli._select import parse_spec

    path, own = parse_spec(specs[0])
    return str(path), own if own is not None else level


def plot_files(kind: str, files: Sequence[str], *, level: int | None = None, layer: str | None = None,
               per_run: bool = False, band: str = "range", title: str | None = None) -> Any:
    """Draw one kind of figure from ticket files.

    Parameters
    ----------
    kind : str
        One of :func:`list_plots` (see ``ticketlab plot --help`` for what each shows).
    files : sequence of str
        ``FILE`` or ``FILE:LEVEL`` specs.
    level : int, optional
        The level for kinds that show one level (default: the last; for several files, the last common level).
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
    return k.func(files, options)


# ----------------------------------------------------------------------------------------------------------
# The kinds


@register_plot("accuracy", description="test accuracy vs density (log), one line per method and control, bands "
               "over seeds")
def _accuracy(specs: Sequence[str], o: dict[str, Any]) -> Any:
    from ticketlab.plots.accuracy import accuracy_vs_density
    from ticketlab.plots.frames import runs_frame

    return accuracy_vs_density(runs_frame(_paths(PLOTS["accuracy"], specs)), per_run=o["per_run"], band=o["band"],
                               title=o["title"])


@register_plot("early-stop", description="early-stopping iteration (minimum validation loss) vs density")
def _early_stop(specs: Sequence[str], o: dict[str, Any]) -> Any:
    from ticketlab.plots.accuracy import early_stop_vs_density
    from ticketlab.plots.frames import runs_frame

    return early_stop_vs_density(runs_frame(_paths(PLOTS["early-stop"], specs)), per_run=o["per_run"],
                                 band=o["band"], title=o["title"])


@register_plot("layer-heatmap", description="density of every layer at every level (heatmap)", max_files=1)
def _layer_heatmap(specs: Sequence[str], o: dict[str, Any]) -> Any:
    from ticketlab.plots.frames import layers_frame
    from ticketlab.plots.layers import layer_density_heatmap

    return layer_density_heatmap(layers_frame(_paths(PLOTS["layer-heatmap"], specs)), title=o["title"])


@register_plot("layer-lines", description="density of every layer against level (one line per layer)",
               max_files=1)
def _layer_lines(specs: Sequence[str], o: dict[str, Any]) -> Any:
    from ticketlab.plots.frames import layers_frame
    from ticketlab.plots.layers import layer_density_lines

    return layer_density_lines(layers_frame(_paths(PLOTS["layer-lines"], specs)), title=o["title"])


@register_plot("overlap", description="pairwise Jaccard matrix of the files' masks (annotated heatmap, chance in "
               "parentheses); one file: its levels", levels="one")
def _overlap(specs: Sequence[str], o: dict[str, Any]) -> Any:
    from ticketlab.cli._select import parse_spec
    from ticketlab.plots.frames import overlap_frame
    from ticketlab.plots.overlap import jaccard_heatmap
    from ticketlab.store import TicketFile

    parsed = [parse_spec(s) for s in specs]
    if len(parsed) == 1 and parsed[0][1] is None and o["level"] is None:
        with TicketFile(parsed[0][0]) as t:
            entries = [(parsed[0][0], lv) for lv in t.levels]
    else:
        entries = [(p, own if own is not None else o["level"]) for p, own in parsed]
    return jaccard_heatmap(overlap_frame(entries), layer=o["layer"] or "total", title=o["title"])


@register_plot("overlap-levels", description="Jaccard of each pair of runs at each level, beside its chance level",
               min_files=2)
def _overlap_levels(specs: Sequence[str], o: dict[str, Any]) -> Any:
    from ticketlab.plots.frames import level_overlap_frame
    from ticketlab.plots.overlap import jaccard_vs_level

    return jaccard_vs_level(level_overlap_frame(_paths(PLOTS["overlap-levels"], specs)), layer=o["layer"] or "total",
                            title=o["title"])


@register_plot("kernels", description="kept fraction of each (output, input) kernel of one layer (--layer), fully "
               "pruned rows and columns marked", max_files=1, levels="one")
def _kernels(specs: Sequence[str], o: dict[str, Any]) -> Any:
    from ticketlab.plots.frames import layer_mask
    from ticketlab.plots.structure import kernel_heatmap

    path, level = _one(PLOTS["kernels"], specs, o["level"])
    mask, name, lv = layer_mask(path, level=level, layer=o["layer"])
    return kernel_heatmap(mask, layer=f"{name} (level {lv})", title=o["title"])


@register_plot("fully-pruned", description="fraction of fully pruned units/channels/kernels per layer vs random "
               "placement", max_files=1, levels="one")
def _fully_pruned(specs: Sequence[str], o: dict[str, Any]) -> Any:
    from ticketlab.plots.frames import structure_frame
    from ticketlab.plots.structure import fully_pruned_plot

    path, level = _one(PLOTS["fully-pruned"], specs, o["level"])
    return fully_pruned_plot(structure_frame([path], level=level), title=o["title"])


def _fairness(specs: Sequence[str], o: dict[str, Any]) -> tuple[dict, int]:
    from ticketlab.plots.frames import fairness_frames

    return fairness_frames(list(specs), level=o["level"])


@register_plot("class-drops", description="per-class accuracy drop vs overall drop, level by level (needs level 0)",
               levels="pruned")
def _class_drops(specs: Sequence[str], o: dict[str, Any]) -> Any:
    from ticketlab.plots.fairness import class_drop_plot

    sections, _ = _fairness(specs, o)
    return class_drop_plot(sections["drops"], title=o["title"])


@register_plot("intensification", description="class accuracy vs dense class accuracy at a level with its OLS fit; "
               "slope per level", levels="pruned")
def _intensification(specs: Sequence[str], o: dict[str, Any]) -> Any:
    from ticketlab.plots.fairness import intensification_plot

    sections, level = _fairness(specs, o)
    return intensification_plot(sections["drops"], sections["fit"], level)


@register_plot("pies", description="pruning-identified exemplars per class (two or more seeds of one method)",
               min_files=2, levels="pruned")
def _pies(specs: Sequence[str], o: dict[str, Any]) -> Any:
    from ticketlab.plots.fairness import pie_plot

    sections, _ = _fairness(specs, o)
    return pie_plot(sections["pies"], title=o["title"])


__all__ = ["PlotKind", "PLOTS", "register_plot", "get_plot", "list_plots", "plot_files"]
