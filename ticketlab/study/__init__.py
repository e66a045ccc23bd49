"""Studies: a grid of IMP chains run as one resumable job, on this machine or a Dask cluster.

    from ticketlab.study import load_spec, run_study, study_status, study_frame
    run_study(load_spec("studies/rewinding.toml"), "runs/rewinding")
    study_frame("runs/rewinding").to_csv("rewinding.csv")

Submodules, one concept each:

- :mod:`~ticketlab.study.flags` — ``ticketlab train`` flags as spec keys and their values;
- :mod:`~ticketlab.study.spec` — the TOML spec, its validation and its expansion into named chains;
- :mod:`~ticketlab.study.manifest` — ``DIR/manifest.json``, rules for running a directory again, locks;
- :mod:`~ticketlab.study.tasks` — what a worker runs (a group of chains, each resumed from its file);
- :mod:`~ticketlab.study.executors` — in this process, in local worker processes, or on Dask;
- :mod:`~ticketlab.study.runner` — :func:`run_study`, which ties them together;
- :mod:`~ticketlab.study.tables` — :func:`study_status` and the tidy :func:`study_frame`, with each chain's
  method (its axis values but the seed).

The analysis of a study directory (overlap, fairness and structure by method, the report page) reads it through
:mod:`ticketlab.frames.study`; its figures are :mod:`ticketlab.plots.study`'s, its page
:func:`ticketlab.report.write_study_report`.
"""

from ticketlab.study.manifest import read_manifest
from ticketlab.study.runner import StudyOutcome, run_study
from ticketlab.study.spec import Chain, StudySpec, load_spec, parse_spec
from ticketlab.study.tables import study_frame, study_status, write_frame

__all__ = ["Chain", "StudySpec", "StudyOutcome", "load_spec", "parse_spec", "read_manifest", "run_study",
           "study_frame", "study_status", "write_frame"]
