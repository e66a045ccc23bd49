"""Analyses of masks and ticket files: pure functions of masks and tensor tables returning tidy DataFrames."""

from ticketlab.analysis.structure import effective_density, effective_masks, group_structure  # noqa: F401
from ticketlab.analysis.fairness import class_drops, fairness_analysis, hooker_test, intensification_fit  # noqa: F401
