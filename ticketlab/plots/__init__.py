"""Figures: pure plotting functions that take tidy DataFrames and return matplotlib Figures.

Every plotting function takes a tidy :class:`pandas.DataFrame` (one row per observation, as returned by
``TicketFile.summary()``/``layer_summary()``, the analysis functions, or the loaders of :mod:`ticketlab.frames`,
which add ``file``, ``model``, ``method``, ``seed`` and ``run`` columns) and returns a
:class:`matplotlib.figure.Figure`; nothing here opens a ticket file. Figures are
made without pyplot: importing or calling anything here never changes matplotlib's global backend. Colours are
seaborn's colour-blind-safe ``colorblind`` palette and viridis; accuracies are fractions; density is the kept
fraction of weights (``docs/conventions.md``)::

    from ticketlab import frames, plots
    runs = frames.runs_frame(["rewind_s0.h5", "rewind_s1.h5", "finetune_s0.h5"])
    fig = plots.accuracy_vs_density(runs)          # one line per method, bands over seeds
    plots.save_figure(fig, "accuracy.pdf")         # .png, .pdf or .svg
    fig = plots.new_figure(6, 4)                   # a blank figure of the same kind, for your own axes

    frames.plot_files("overlap", ["rewind_s0.h5:8", "rewind_s1.h5:8"])  # what `ticketlab plot` draws

The kinds ``ticketlab plot`` draws are the registry :data:`PLOTS` (:mod:`ticketlab.plots.kinds`).

In Jupyter, run ``%matplotlib inline`` once: a Figure made without pyplot is displayed as an image only after
the inline backend has registered its formatter (the notebooks in ``analysis/`` do this in their first cell).

=============================  =================================================================================
function                       figure
=============================  =================================================================================
accuracy_vs_density            test accuracy vs density (log x, compression on top), lines per method/control
early_stop_vs_density          early-stopping iteration vs density, likewise
layer_density_heatmap          density of each layer (rows) at each level (columns)
layer_density_lines            density of each layer against level, and the pooled total
jaccard_heatmap                pairwise Jaccard matrix, annotated, with the chance level
jaccard_vs_level               Jaccard of pairs of runs against level, beside the chance level
kernel_heatmap                 kept fraction of each (output, input) kernel of a layer
fully_pruned_plot              fully pruned units/channels/kernels per layer vs random placement
class_drop_plot                per-class accuracy drop against overall drop, by level
class_accuracy_plot            each class's accuracy against level, beside the overall accuracy
excess_drop_plot               each class's drop minus the overall drop at one level
intensification_plot           class accuracy vs dense class accuracy with the OLS fit; slope per level
hooker_plot                    Hooker et al.'s test: change in (recall − accuracy) per class
pie_plot                       pruning-identified exemplars per class
study_accuracy                 a study: accuracy vs density per method, band over seeds (also study_early_stop)
method_overlap_heatmap         a study: method x method mean Jaccard at one level, beside chance
class_drops_by_method          a study: per-class accuracy drop per method, range over seeds
hooker_by_method               a study: Hooker et al.'s change per class and method, impacted classes marked
structure_vs_density           a study: fully pruned groups and effective density vs density per method
=============================  =================================================================================
"""

from ticketlab.plots._style import COLORBLIND, FORMATS, figure_format, new_figure, palette, save_figure
from ticketlab.plots.accuracy import accuracy_vs_density, early_stop_vs_density, metric_vs_density
from ticketlab.plots.fairness import (class_accuracy_plot, class_drop_plot, excess_drop_plot, hooker_plot,
                                      intensification_plot, pie_plot)
from ticketlab.plots.kinds import PLOTS, PlotKind, get_plot, list_plots, register_plot
from ticketlab.plots.layers import layer_density_heatmap, layer_density_lines
from ticketlab.plots.overlap import jaccard_heatmap, jaccard_vs_level
from ticketlab.plots.structure import fully_pruned_plot, kernel_fractions, kernel_heatmap
from ticketlab.plots.study import (class_drops_by_method, hooker_by_method, method_overlap_heatmap, structure_vs_density,
                                   study_accuracy, study_early_stop, study_metric_vs_density)

__all__ = [
    "COLORBLIND", "FORMATS", "figure_format", "new_figure", "palette", "save_figure",
    "accuracy_vs_density", "early_stop_vs_density", "metric_vs_density",
    "layer_density_heatmap", "layer_density_lines",
    "jaccard_heatmap", "jaccard_vs_level",
    "kernel_fractions", "kernel_heatmap", "fully_pruned_plot",
    "class_drop_plot", "class_accuracy_plot", "excess_drop_plot", "intensification_plot", "hooker_plot", "pie_plot",
    "PLOTS", "PlotKind", "get_plot", "list_plots", "register_plot",
    "study_metric_vs_density", "study_accuracy", "study_early_stop", "method_overlap_heatmap",
    "class_drops_by_method", "hooker_by_method", "structure_vs_density",
]
