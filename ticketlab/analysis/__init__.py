"""Analyses of masks and ticket files: pure functions of masks and tensor tables returning tidy DataFrames."""

from ticketlab.analysis.structure import effective_density, effective_masks, group_structure  # noqa: F401
from ticketlab.analysis.fairness import class_drops, fairness_analysis, hooker_test, intensification_fit  # noqa: F401
from ticketlab.analysis.overlap import (  # noqa: F401
    METRICS, OverlapCounts, expected_intersection, expected_jaccard, get_metric, jaccard_matrix, list_metrics,
    mask_overlap, overlap_counts, overlap_table, pack, packed_overlap_counts, pairwise_overlap, register_metric,
    total_intersection_pvalue,
)
from ticketlab.analysis.sparsity import mask_sparsity, sparsity_table  # noqa: F401
from ticketlab.analysis.combine import chance_density, combine_layer, combine_masks, combine_report  # noqa: F401
