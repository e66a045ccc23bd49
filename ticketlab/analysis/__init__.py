"""Analyses of masks: pure functions of masks, kept counts and tensor tables returning numbers or tidy DataFrames.

Nothing here opens a file, draws a figure or writes HTML: arrays in, DataFrames out. Ticket files are turned
into these inputs by :mod:`ticketlab.frames`; figures of the results are in :mod:`ticketlab.plots`.

==========  ==========================================================================================
module      holds
==========  ==========================================================================================
overlap     mask overlap: counts, the metric registry, the chance level, tidy tables
combine     combining masks (intersection, union, vote) and the chance density of the result
sparsity    layer-wise density, sparsity and compression from kept counts
structure   structured-like connectivity (fully pruned groups) and effective density
fairness    per-class accuracy drops, the intensification fit, Hooker et al.'s test, PIEs
==========  ==========================================================================================
"""

from ticketlab.analysis.combine import chance_density, combine_layer, combine_masks, combine_report
from ticketlab.analysis.fairness import class_drops, fairness_analysis, hooker_test, intensification_fit
from ticketlab.analysis.overlap import (METRICS, OverlapCounts, expected_intersection, expected_jaccard, get_metric,
                                        jaccard_matrix, list_metrics, mask_overlap, overlap_counts, overlap_table,
                                        pack, packed_overlap_counts, pairwise_overlap, register_metric,
                                        total_intersection_pvalue)
from ticketlab.analysis.sparsity import mask_sparsity, sparsity_table
from ticketlab.analysis.structure import effective_density, effective_masks, group_structure

__all__ = [
    "chance_density", "combine_layer", "combine_masks", "combine_report",
    "class_drops", "fairness_analysis", "hooker_test", "intensification_fit",
    "METRICS", "OverlapCounts", "expected_intersection", "expected_jaccard", "get_metric", "jaccard_matrix",
    "list_metrics", "mask_overlap", "overlap_counts", "overlap_table", "pack", "packed_overlap_counts",
    "pairwise_overlap", "register_metric", "total_intersection_pvalue",
    "mask_sparsity", "sparsity_table",
    "effective_density", "effective_masks", "group_structure",
]
