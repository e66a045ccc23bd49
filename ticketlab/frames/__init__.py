"""Ticket files → the tidy inputs of analysis, plots and the report, written once.

Everything here opens ticket files (through :mod:`ticketlab.store`) and hands arrays to :mod:`ticketlab.analysis`
or tidy :class:`pandas.DataFrame` objects to :mod:`ticketlab.plots` and :mod:`ticketlab.report`; those never open
a file. The analysis commands of the CLI are one call each into this package::

    from ticketlab import frames, plots
    runs = frames.runs_frame(["rewind_s0.h5", "rewind_s1.h5", "finetune_s0.h5"])
    plots.accuracy_vs_density(runs)                     # one line per method, bands over seeds
    frames.plot_files("overlap", ["rewind_s0.h5:8", "rewind_s1.h5:8"])   # what `ticketlab plot` draws

==========  ==============================================================================================
module      holds
==========  ==============================================================================================
identity    run identity read from the stored config (reset mode, strategy, controls, seed); run labels
files       opening files, resolving a level of a file, the levels several files share
runs        :func:`runs_frame`, :func:`layers_frame` and the sparsity tables of ``ticketlab sparsity``
overlap     the one layer-by-layer overlap read loop: ``ticketlab overlap``, :func:`overlap_frame`, ...
structure   fully pruned groups and effective density of files' levels; one layer's mask
fairness    a population of runs read for the fairness analyses, and every section of it
study       a study directory: its chains, methods and populations; overlap, fairness, structure of a study
plotting    :func:`plot_files`: a plot kind's input loaded, then drawn
==========  ==============================================================================================
"""

from ticketlab.frames.fairness import (POPULATION_SECTIONS, FairnessResult, fairness_frames, fairness_of_files,
                                       has_fairness_data, load_runs, population_level, read_run)
from ticketlab.frames.files import (common_levels, last_common_level, levels_text, opened, resolve_level,
                                    same_model, unique_tickets)
from ticketlab.frames.identity import (Population, RunIdentity, RunInfo, method_labels, population_key, populations,
                                       populations_text, run_identity, run_infos)
from ticketlab.frames.overlap import (FileComparison, compare_files, level_overlap_frame, overlap_frame,
                                      pairwise_tables)
from ticketlab.frames.plotting import LOADERS, plot_files
from ticketlab.frames.runs import RUN_COLUMNS, layers_frame, run_table, runs_frame, sparsity_frames
from ticketlab.frames.structure import (default_kernel_layer, effective_density_frame, layer_mask, structure_frame,
                                        structure_table)
from ticketlab.frames.study import (Study, StudyChain, is_study, matched_level, method_overlap, read_study,
                                    study_argument, study_fairness, study_overlap, study_runs, study_structure)

__all__ = [
    "RunIdentity", "RunInfo", "method_labels", "run_identity", "run_infos", "Population", "population_key",
    "populations", "populations_text",
    "opened", "same_model", "unique_tickets", "resolve_level", "common_levels", "last_common_level", "levels_text",
    "RUN_COLUMNS", "runs_frame", "layers_frame", "run_table", "sparsity_frames",
    "pairwise_tables", "FileComparison", "compare_files", "overlap_frame", "level_overlap_frame",
    "structure_frame", "effective_density_frame", "structure_table", "default_kernel_layer", "layer_mask",
    "POPULATION_SECTIONS", "has_fairness_data", "population_level", "read_run", "load_runs", "FairnessResult",
    "fairness_of_files", "fairness_frames",
    "LOADERS", "plot_files",
    "Study", "StudyChain", "is_study", "read_study", "study_argument", "matched_level", "study_runs",
    "study_overlap", "method_overlap", "study_fairness", "study_structure",
]
