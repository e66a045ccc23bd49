"""Fairness of ticket files: a population of runs read into :class:`~ticketlab.analysis.fairness.FairnessRun`
objects, the pruned level they are compared at, and every fairness section of them.

A population is the runs (seeds) of one method (:func:`ticketlab.frames.populations`); files of several methods
are analysed population by population, never pooled. Each file needs level 0 (the dense network) and a test-set
evaluation at every level. The pruned level compared with level 0 is ``level``, the ``FILE:LEVEL`` of every
file, or by default the last pruned level common to all files. The analyses are
:mod:`ticketlab.analysis.fairness`; ``ticketlab fairness`` prints :func:`fairness_of_files`, and its
``--report`` page and the report's fairness section are :mod:`ticketlab.report.fairness`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ticketlab.analysis.fairness import EFFECT, SECTIONS, FairnessRun, check_same_test_set, fairness_analysis
from ticketlab.errors import ConfigError, TicketFileError
from ticketlab.frames.files import PathLike, closing, last_common_level, levels_text
from ticketlab.frames.identity import Population, populations, populations_text, run_infos
from ticketlab.store import Selection, TicketFile, check_same_model, parse_spec, select

#: Sections that compare populations of models and need two runs or more.
POPULATION_SECTIONS = ("hooker", "pies", "pie_examples")


def has_fairness_data(ticket: TicketFile) -> bool:
    """Whether a file can join a fairness population: level 0 and a pruned level, every level evaluated."""
    levels = ticket.levels
    return 0 in levels and len(levels) >= 2 and all(ticket.evaluation(lv) is not None for lv in levels)


def population_level(selections: Sequence[Selection], level: int | None = None) -> tuple[list[Selection], int]:
    """The pruned level of a population: ``level``, every file's ``FILE:LEVEL``, or the last pruned level common
    to all files. Refuses level 0 (the dense network every level is compared with) and files given different
    levels."""
    selections = list(selections)
    if level is None:
        own = [parse_spec(s.spec)[1] is not None for s in selections]
        if not all(own):
            common = last_common_level(selections, pruned=True)
            if common is None:
                raise TicketFileError("the files have no pruned level in common (levels: "
                                      + "; ".join(f"{s.path.name}: {levels_text(s.ticket.levels)}"
                                                  for s in selections) + "); choose one with --level N")
            selections = [s if o else dataclasses.replace(s, level=common) for s, o in zip(selections, own)]
    chosen = {s.level for s in selections}
    if len(chosen) > 1:
        raise ConfigError("the pruned population must be one level, but the files were given levels "
                          + ", ".join(f"{s.level} ({s.path.name})" for s in selections)
                          + "; choose one with --level N")
    level = chosen.pop()
    if level == 0:
        raise ConfigError("level 0 is the dense network that every level is compared with; choose a pruned "
                          "level with --level N (N >= 1)")
    return selections, level


def read_run(ticket: TicketFile, name: str, level: int, num_classes: int, n_test: int | None) -> FairnessRun:
    """One file's evaluations at every level as a :class:`FairnessRun` (predictions of levels 0 and ``level``)."""
    t = ticket
    levels = t.levels
    if 0 not in levels:
        raise TicketFileError(f"{t.path}: has no level 0 (the dense network), which every drop is measured from")
    per_class, acc, dens, preds = [], [], [], {}
    for lv in levels:
        ev = t.evaluation(lv)
        if ev is None:
            raise TicketFileError(f"{t.path}: level {lv} has no test-set evaluation; fairness needs one per level")
        if ev.num_classes != num_classes:
            raise TicketFileError(f"{t.path}: level {lv} is evaluated on {ev.num_classes} classes, not "
                                  f"{num_classes} like the other files and levels")
        if n_test is not None and ev.predictions.size != n_test:
            raise TicketFileError(f"{t.path}: level {lv} has {ev.predictions.size:,} predictions for "
                                  f"{n_test:,} test labels")
        per_class.append(ev.per_class_accuracy)
        acc.append(ev.accuracy)
        dens.append(t.level_record(lv)["density"])
        if lv in (0, level):
            preds[lv] = ev.predictions
    return FairnessRun(name=name, levels=levels, class_accuracy=np.vstack(per_class), accuracy=np.array(acc),
                       density=np.array(dens), predictions=preds, seed=t.seed)


def load_runs(selections: Sequence[Selection], level: int, names: Sequence[str]
              ) -> tuple[list[FairnessRun], np.ndarray | None, tuple[str, ...] | None]:
    """Read each selected file's evaluations into a :class:`FairnessRun` named by ``names``.

    Returns ``(runs, labels, class_names)``: the test labels shared by all runs (several runs must share their
    test set; refused otherwise) and the class names, each ``None`` when the files do not record them.
    """
    datasets = [s.ticket.dataset for s in selections]
    first = datasets[0]
    if first is not None:
        num_classes = first.num_classes
    else:
        ev0 = selections[0].ticket.evaluation(0) if 0 in selections[0].ticket.levels else None
        if ev0 is None:
            raise TicketFileError(f"{selections[0].path}: records neither its dataset nor a level-0 evaluation")
        num_classes = ev0.num_classes
    class_names = first.class_names if first is not None and first.class_names else None
    labels = None
    if len(selections) > 1:
        labels = check_same_test_set([None if d is None else d.test_labels for d in datasets],
                                     [str(s.path) for s in selections])
    elif first is not None and first.test_labels is not None:
        labels = first.test_labels
    runs = [read_run(s.ticket, n, level, num_classes, None if labels is None else labels.size)
            for s, n in zip(selections, names)]
    return runs, labels, class_names


def file_names(selections: Sequence[Selection]) -> list[str]:
    """Run names for tables: the file names, or the paths when two files share a name."""
    names = [s.path.name for s in selections]
    if len(set(names)) < len(names):
        names = [str(s.path) for s in selections]
    return names


@dataclass
class FairnessResult:
    """The fairness analyses of the runs read from ticket files, population by population.

    Attributes
    ----------
    level : int
        The pruned level compared with level 0.
    runs : list of dict
        The ``runs`` section: one record per run with ``run``, ``seed``, ``method`` (as recorded), ``levels``,
        ``level``, ``density``, ``dense_accuracy``, ``accuracy`` (at ``level``) and ``population``.
    sections : dict of str to DataFrame
        What :func:`ticketlab.analysis.fairness.fairness_analysis` returned, with a ``population`` column: the
        per-run sections (``drops``, ``fit``) over every run (the fit's ``null_slope`` estimated within the run's
        population), the population sections (``hooker``, ``pies``, ``pie_examples``) computed separately for
        each population of two runs or more.
    warnings : list of str
        Doubts about the runs: files with one seed, populations too small for the population sections.
    populations : list of dict
        One record per population: ``population`` (its name), ``runs`` (how many) and ``files``.
    """

    level: int
    runs: list[dict[str, Any]]
    sections: dict[str, pd.DataFrame]
    warnings: list[str] = field(default_factory=list)
    populations: list[dict[str, Any]] = field(default_factory=list)


def fairness_of_files(specs: Sequence[str], *, level: int | None = None, sections: Sequence[str] = SECTIONS,
                      alpha: float = 0.05, shift: str = "population", ties: str = "largest",
                      names: str = "file", effect: float = EFFECT, mixed: str = "split",
                      what: str = "fairness", groups: Sequence[Population] | None = None) -> FairnessResult:
    """Every fairness section of the runs in ``specs``, as ``ticketlab fairness`` prints them.

    The runs are grouped into populations (runs of one method, model and dataset; :func:`ticketlab.frames.
    populations`): a population statistic (Hooker et al.'s test, PIEs) is computed within each population of two
    runs or more, never across methods.

    Parameters
    ----------
    specs : sequence of str
        ``FILE`` or ``FILE:LEVEL`` of one model, evaluated on one test set.
    level : int, optional
        The pruned level (default: every file's ``:LEVEL``, else the last pruned level common to all files).
    sections : sequence of str
        Which of :data:`~ticketlab.analysis.fairness.SECTIONS` to compute; those of
        :data:`POPULATION_SECTIONS` only for populations of two runs or more.
    alpha, shift, ties, effect
        As for :func:`~ticketlab.analysis.fairness.fairness_analysis`.
    names : {"file", "run"}
        Name the runs by file name, or by run label (method and seed, :func:`ticketlab.frames.run_infos`).
    mixed : {"split", "refuse"}
        Runs of several methods: analyse each population separately (default), or refuse with a one-line error
        naming the methods (what a figure of one population needs).
    what : str
        The command, for the refusal (``"plot 'pies'"``).
    groups : sequence of Population, optional
        The populations, by positions in ``specs`` (default: :func:`ticketlab.frames.populations` of the files).
        A study passes its own: chains that differ only in their seed (:func:`ticketlab.frames.read_study`).
    """
    if not 0 < alpha < 1:
        raise ConfigError(f"--alpha must be a number in (0, 1); got {alpha}")
    if names not in ("file", "run"):
        raise ConfigError(f"names must be 'file' or 'run'; got {names!r}")
    if mixed not in ("split", "refuse"):
        raise ConfigError(f"mixed must be 'split' or 'refuse'; got {mixed!r}")
    if not specs:
        raise ConfigError("no ticket files given")
    with closing(select(specs, level)) as opened_sels:
        sels, level = population_level(opened_sels, level)
        check_same_model(sels)
        tickets = [s.ticket for s in sels]
        pops = populations(tickets) if groups is None else list(groups)
        if mixed == "refuse" and len(pops) > 1:
            raise ConfigError(f"{what} shows one population (runs of one method, different seeds), but the files "
                              f"hold {len(pops)} methods: {populations_text(pops, tickets)}; give the files of "
                              "one method")
        run_names = file_names(sels) if names == "file" else [r.run for r in run_infos(tickets)]
        runs, labels, class_names = load_runs(sels, level, run_names)
        member_of = {i: p.name for p in pops for i in p.members}
        warnings = _population_warnings(pops, tickets, sections)
        per_run = [s for s in SECTIONS if s in sections and s not in POPULATION_SECTIONS and s != "fit"]
        result = fairness_analysis(runs, level, labels=labels, class_names=class_names, alpha=alpha, shift=shift,
                                   ties=ties, sections=per_run, effect=effect)
        if "fit" in sections:  # per run, but its null_slope is estimated from the run's population
            fits = pd.concat([fairness_analysis([runs[i] for i in p.members], level, sections=["fit"])["fit"]
                              for p in pops], ignore_index=True)
            order = {r.name: i for i, r in enumerate(runs)}   # back in the order of the runs given
            result["fit"] = fits.sort_values("run", key=lambda c: c.map(order), kind="stable", ignore_index=True)
        by_name = {r.name: member_of[i] for i, r in enumerate(runs)}
        for frame in result.values():
            frame["population"] = frame["run"].map(by_name)
        pooled: dict[str, list[pd.DataFrame]] = {}
        wanted = [s for s in SECTIONS if s in sections and s in POPULATION_SECTIONS]
        for p in pops:
            if len(p.members) < 2 or not wanted:
                continue
            part = fairness_analysis([runs[i] for i in p.members], level, labels=labels, class_names=class_names,
                                     alpha=alpha, shift=shift, ties=ties, sections=wanted, effect=effect)
            for key, frame in part.items():
                pooled.setdefault(key, []).append(frame.assign(population=p.name))
        for key, frames in pooled.items():
            result[key] = pd.concat(frames, ignore_index=True)
        result = {k: result[k] for k in SECTIONS if k in result}
        records = [{
            "run": r.name, "seed": r.seed, "method": t.method, "levels": levels_text(list(r.levels)),
            "level": level, "density": float(r.density[r.row(level)]),
            "dense_accuracy": float(r.accuracy[r.row(0)]), "accuracy": float(r.accuracy[r.row(level)]),
            "population": member_of[i],
        } for i, (r, t) in enumerate(zip(runs, tickets))]
        summary = [{"population": p.name, "runs": len(p.members),
                    "files": [str(tickets[i].path) for i in p.members]} for p in pops]
    return FairnessResult(level, records, result, warnings, summary)


def _population_warnings(pops: Sequence[Population], tickets: Sequence[TicketFile],
                         sections: Sequence[str]) -> list[str]:
    out = []
    for p in pops:
        seeds = [tickets[i].seed for i in p.members if tickets[i].seed is not None]
        if len(set(seeds)) < len(seeds):
            out.append(f"several files of population {p.name!r} have the same seed ({seeds}); are they the same "
                       "run?")
    asked = [s for s in POPULATION_SECTIONS if s in sections]
    single = [p for p in pops if len(p.members) < 2]
    if asked and len(tickets) > 1 and single:
        out.append("Hooker et al.'s test and PIEs need two runs or more of one method; left out for "
                   + populations_text(single, tickets))
    return out


def fairness_frames(paths: Sequence[PathLike | TicketFile], *, level: int | None = None, what: str = "fairness_frames"
                    ) -> tuple[dict[str, pd.DataFrame], int]:
    """The fairness analyses of one population of runs (seeds of one method), as ``ticketlab fairness`` computes them.

    Parameters
    ----------
    paths : sequence of path-like or TicketFile
        Ticket files of one model with level 0 (the dense network) and a test-set evaluation at every level,
        all runs of one method (:func:`ticketlab.frames.populations`); files of several methods are refused with
        a one-line :class:`~ticketlab.errors.ConfigError` naming them.
    level : int, optional
        The pruned level for the intensification scatter, Hooker et al.'s test and PIEs (default: the last
        level common to all files).
    what : str
        The caller named in the refusal (``"plot 'pies'"``).

    Returns
    -------
    (sections, level)
        ``sections`` as :func:`ticketlab.analysis.fairness.fairness_analysis` returns them, keyed ``drops``,
        ``fit`` and, for two runs or more, ``hooker``, ``pies`` and ``pie_examples``; the runs are named by
        their run labels (method, seed). ``level`` is the pruned level used.
    """
    specs = [str(p.path) if isinstance(p, TicketFile) else str(p) for p in paths]
    result = fairness_of_files(specs, level=level, names="run", mixed="refuse", what=what)
    return result.sections, result.level


__all__ = ["POPULATION_SECTIONS", "has_fairness_data", "population_level", "read_run", "load_runs", "file_names",
           "FairnessResult", "fairness_of_files", "fairness_frames"]
