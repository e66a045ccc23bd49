"""The figures ``ticketlab plot KIND FILES...`` draws: a registry of plot kinds.

Each kind names the tidy input it draws (``input``, one of :data:`INPUTS`) and a function that draws it. Reading
the files is not done here: :func:`ticketlab.frames.plot_files` loads a kind's input from ticket files and
calls :meth:`PlotKind.draw`; the command ``ticketlab plot`` calls that. In Python::

    from ticketlab.frames import plot_files
    from ticketlab.plots import save_figure
    fig = plot_files("accuracy", ["rewind_s0.h5", "rewind_s1.h5", "finetune_s0.h5"])
    save_figure(fig, "accuracy.pdf")

Files are given as ``FILE`` or ``FILE:LEVEL`` (the syntax of the analysis commands); kinds that show every
level refuse ``:LEVEL``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ticketlab.errors import ConfigError
from ticketlab.registry import Registry

#: The tidy inputs plot kinds draw, and what each is (the loaders are :mod:`ticketlab.frames`).
INPUTS = {
    "runs": "ticketlab.frames.runs_frame: one row per run, level and control branch",
    "layers": "ticketlab.frames.layers_frame: one row per run, level and masked tensor",
    "overlap": "ticketlab.frames.overlap_frame: every pair of (file, level) masks",
    "level-overlap": "ticketlab.frames.level_overlap_frame: every pair of runs at every level they share",
    "layer-mask": "ticketlab.frames.layer_mask: (mask, layer, level) of one layer of one file",
    "structure": "ticketlab.frames.structure_frame: fully pruned groups per layer",
    "fairness": "ticketlab.frames.fairness_frames: (sections, level) of a population of runs",
}
#: How a kind treats levels: every level, one level per file, or every level plus one pruned level.
LEVEL_MODES = ("all", "one", "pruned")


@dataclass(frozen=True)
class PlotKind:
    """One kind of figure drawn from ticket files.

    Attributes
    ----------
    name : str
        Registry name (the ``KIND`` of ``ticketlab plot``).
    func : callable
        ``func(data, options) -> Figure``: ``data`` is the kind's ``input`` as :mod:`ticketlab.frames` loads
        it, ``options`` a dict with ``level``, ``layer``, ``per_run``, ``band`` and ``title``.
    description : str
        One line for ``--help``.
    input : str
        The tidy input drawn, one of :data:`INPUTS`.
    min_files, max_files : int
        How many files the kind takes (``max_files`` 0 = any number).
    levels : str
        ``"all"`` (every level; ``:LEVEL`` refused), ``"one"`` (one level per file) or ``"pruned"`` (every level,
        plus one pruned level for the level-specific panels).
    """

    name: str
    func: Callable[[Any, dict[str, Any]], Any]
    description: str
    input: str = "runs"
    min_files: int = 1
    max_files: int = 0
    levels: str = "all"

    def draw(self, data: Any, options: dict[str, Any]) -> Any:
        """The figure of ``data`` (the kind's input) with ``options``."""
        return self.func(data, options)


#: All plot kinds by name, in the order ``ticketlab plot --help`` lists them; filled by :func:`register_plot`.
PLOTS: Registry[PlotKind] = Registry("plot kind")


def register_plot(name: str, *, description: str, input: str = "runs", min_files: int = 1, max_files: int = 0,
                  levels: str = "all") -> Callable:
    """Decorator adding ``func(data, options) -> Figure`` to :data:`PLOTS`."""
    if levels not in LEVEL_MODES:
        raise ConfigError(f"levels must be one of {', '.join(LEVEL_MODES)}; got {levels!r}")
    if input not in INPUTS:
        raise ConfigError(f"unknown plot input {input!r}; choose one of: {', '.join(INPUTS)}")

    def decorate(func: Callable) -> Callable:
        try:
            PLOTS.register(name, PlotKind(name, func, description, input, min_files, max_files, levels))
        except ValueError as err:  # registered twice
            raise ConfigError(str(err)) from None
        return func

    return decorate


def get_plot(name: str) -> PlotKind:
    """The registered plot kind ``name``; raises :class:`ConfigError` listing the valid names."""
    return PLOTS.get(name)


def list_plots() -> list[str]:
    """Names of the registered plot kinds, in registration order."""
    return PLOTS.names()


# ----------------------------------------------------------------------------------------------------------
# The kinds


@register_plot("accuracy", description="test accuracy vs density (log), one line per method and control, bands "
               "over seeds")
def _accuracy(runs: Any, o: dict[str, Any]) -> Any:
    from ticketlab.plots.accuracy import accuracy_vs_density

    return accuracy_vs_density(runs, per_run=o["per_run"], band=o["band"], title=o["title"])


@register_plot("early-stop", description="early-stopping iteration (minimum validation loss) vs density")
def _early_stop(runs: Any, o: dict[str, Any]) -> Any:
    from ticketlab.plots.accuracy import early_stop_vs_density

    return early_stop_vs_density(runs, per_run=o["per_run"], band=o["band"], title=o["title"])


@register_plot("layer-heatmap", description="density of every layer at every level (heatmap)", input="layers",
               max_files=1)
def _layer_heatmap(layers: Any, o: dict[str, Any]) -> Any:
    from ticketlab.plots.layers import layer_density_heatmap

    return layer_density_heatmap(layers, title=o["title"])


@register_plot("layer-lines", description="density of every layer against level (one line per layer)",
               input="layers", max_files=1)
def _layer_lines(layers: Any, o: dict[str, Any]) -> Any:
    from ticketlab.plots.layers import layer_density_lines

    return layer_density_lines(layers, title=o["title"])


@register_plot("overlap", description="pairwise Jaccard matrix of the files' masks (annotated heatmap, chance in "
               "parentheses); one file: its levels", input="overlap", levels="one")
def _overlap(pairs: Any, o: dict[str, Any]) -> Any:
    from ticketlab.plots.overlap import jaccard_heatmap

    return jaccard_heatmap(pairs, layer=o["layer"] or "total", title=o["title"])


@register_plot("overlap-levels", description="Jaccard of each pair of runs at each level, beside its chance level",
               input="level-overlap", min_files=2)
def _overlap_levels(pairs: Any, o: dict[str, Any]) -> Any:
    from ticketlab.plots.overlap import jaccard_vs_level

    return jaccard_vs_level(pairs, layer=o["layer"] or "total", title=o["title"])


@register_plot("kernels", description="kept fraction of each (output, input) kernel of one layer (--layer), fully "
               "pruned rows and columns marked", input="layer-mask", max_files=1, levels="one")
def _kernels(data: Any, o: dict[str, Any]) -> Any:
    from ticketlab.plots.structure import kernel_heatmap

    mask, name, lv = data
    return kernel_heatmap(mask, layer=f"{name} (level {lv})", title=o["title"])


@register_plot("fully-pruned", description="fraction of fully pruned units/channels/kernels per layer vs random "
               "placement", input="structure", max_files=1, levels="one")
def _fully_pruned(structure: Any, o: dict[str, Any]) -> Any:
    from ticketlab.plots.structure import fully_pruned_plot

    return fully_pruned_plot(structure, title=o["title"])


@register_plot("class-drops", description="per-class accuracy drop vs overall drop, level by level (needs level 0)",
               input="fairness", levels="pruned")
def _class_drops(data: Any, o: dict[str, Any]) -> Any:
    from ticketlab.plots.fairness import class_drop_plot

    sections, _ = data
    return class_drop_plot(sections["drops"], title=o["title"])


@register_plot("intensification", description="class accuracy vs dense class accuracy at a level with its OLS fit; "
               "slope per level", input="fairness", levels="pruned")
def _intensification(data: Any, o: dict[str, Any]) -> Any:
    from ticketlab.plots.fairness import intensification_plot

    sections, level = data
    return intensification_plot(sections["drops"], sections["fit"], level)


@register_plot("pies", description="pruning-identified exemplars per class (two or more seeds of one method)",
               input="fairness", min_files=2, levels="pruned")
def _pies(data: Any, o: dict[str, Any]) -> Any:
    from ticketlab.plots.fairness import pie_plot

    sections, _ = data
    return pie_plot(sections["pies"], title=o["title"])


__all__ = ["PlotKind", "PLOTS", "INPUTS", "LEVEL_MODES", "register_plot", "get_plot", "list_plots"]
