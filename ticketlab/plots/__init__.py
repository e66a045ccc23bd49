"""Figures of ticket files: pure plotting functions on tidy DataFrames, and a loader layer that makes those frames.

Every plotting function takes a tidy :class:`pandas.DataFrame` (one row per observation, as returned by
``TicketFile.summary()``/``layer_summary()``, the analysis functions, or the loaders below, which add ``file``,
``model``, ``method``, ``seed`` and ``run`` columns) and returns a :class:`matplotlib.figure.Figure`. Figures are
made without pyplot: importing or calling anything here never changes matplotlib's global backend. Colours are
seaborn's colour-blind-safe ``colorblind`` palette and viridis; accuracies are fractions; density is the kept
fraction of weights (``docs/conventions.md``)::

    from ticketlab import plots
    runs = plots.runs_frame(["rewind_s0.h5", "rewind_s1.h5", "finetune_s0.h5"])
    fig = plots.accuracy_vs_density(runs)          # one line per method, bands over seeds
    plots.save_figure(fig, "accuracy.pdf")         # .png, .pdf or .svg

    plots.plot_files("overlap", ["rewind_s0.h5:8", "rewind_s1.h5:8"])   # what `ticketlab plot` draws

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
intensification_plot           class accuracy vs dense class accuracy with the OLS fit; slope per level
pie_plot                       pruning-identified exemplars per class
=============================  =================================================================================
"""

from ticketlab.plots._style import COLORBLIND, FORMATS, palette, save_figure
from ticketlab.plots.accuracy import accuracy_vs_density, early_stop_vs_density, metric_vs_density
from ticketlab.plots.fairness import class_drop_plot, intensification_plot, pie_plot
from ticketlab.plots.frames import (fairness_frames, layer_mask, layers_frame, level_overlap_frame, method_labels,
                                    overlap_frame, runs_frame, structure_frame)
from ticketlab.plots.kinds import PLOTS, get_plot, list_plots, plot_files, register_plot
from ticketlab.plots.layers import layer_density_heatmap, layer_density_lines
from ticketlab.plots.overlap import jaccard_heatmap, jaccard_vs_level
from ticketlab.plots.structure import fully_pruned_plot, kernel_fractions, kernel_heatmap

__all__ = [
    "COLORBLIND", "FORMATS", "palette", "save_figure",
    "accuracy_vs_density", "early_stop_vs_density", "metric_vs_density",
    "layer_density_heatmap", "layer_density_lines",
    "jaccard_heatmap", "jaccard_vs_level",
    "kernel_fractions", "kernel_heatmap", "fully_pruned_plot",
    "class_drop_plot", "intensification_plot", "pie_plot",
    "runs_frame", "layers_frame", "overlap_frame", "level_overlap_frame", "structure_frame", "layer_mask",
    "fairness_frames", "method_labels",
    "PLOTS", "get_plot", "list_plots", "plot_files", "register_plot",
]
