"""``ticketlab fairness FILE [...]``: which classes pruning hurts more than the overall accuracy shows.

Sections (choose with ``--what``; default all but ``pie_examples``):

- ``runs``: the runs read and the level compared with the dense network;
- ``drops``: per run, level and class: class accuracy, its dense value, the drop, the overall drop, and the
  class's drop minus the overall drop (every level of every run);
- ``fit``: per run and level, OLS of class accuracy on dense class accuracy across classes, with 95% CIs;
- ``hooker`` (several runs): Hooker et al.'s per-class Welch t-test, dense population (level 0 of each run)
  against the pruned population (the chosen level of each run);
- ``pies`` (several runs): pruning-identified exemplars counted per class; ``pie_examples`` lists them.

``--json`` prints one object whose keys are the sections and whose values are lists of records with the same
keys as the table columns; ``--csv`` prints one section (name it with ``--what``). Definitions are in
:mod:`ticketlab.analysis.fairness`.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

import numpy as np

from ticketlab.analysis.fairness import SECTIONS, SHIFTS, TIES, FairnessRun, check_same_test_set, fairness_analysis
from ticketlab.cli import example_epilog
from ticketlab.cli._select import (Selection, add_output_arguments, add_selection_arguments, check_same_model, emit,
                                   fmt_float, fmt_int, fmt_str, parse_spec, select)
from ticketlab.cli._output import to_json
from ticketlab.errors import ConfigError, TicketFileError

ALL_SECTIONS = ("runs",) + SECTIONS
DEFAULT_SECTIONS = tuple(s for s in ALL_SECTIONS if s != "pie_examples")
POPULATION_SECTIONS = ("hooker", "pies", "pie_examples")


def _yes_no(v: Any) -> str:
    return "-" if v is None else ("yes" if v else "no")


f4, f3 = fmt_float(4), fmt_float(3)
COLUMNS: dict[str, list[tuple[str, str, Any]]] = {
    "runs": [("run", "run", fmt_str), ("seed", "seed", fmt_str), ("method", "method", fmt_str),
             ("levels", "levels", fmt_str), ("level", "level", fmt_int), ("density", "density", f4),
             ("dense_accuracy", "dense acc", f4), ("accuracy", "acc", f4)],
    "drops": [("run", "run", fmt_str), ("seed", "seed", fmt_str), ("level", "level", fmt_int),
              ("density", "density", f4), ("class", "class", fmt_int), ("class_name", "name", fmt_str),
              ("class_accuracy", "class acc", f4), ("dense_class_accuracy", "dense class acc", f4),
              ("drop", "drop", f4), ("relative_drop", "rel drop", f4), ("accuracy", "acc", f4),
              ("dense_accuracy", "dense acc", f4), ("overall_drop", "overall drop", f4),
              ("overall_relative_drop", "overall rel drop", f4), ("excess_drop", "excess drop", f4)],
    "fit": [("run", "run", fmt_str), ("seed", "seed", fmt_str), ("level", "level", fmt_int),
            ("density", "density", f4), ("n_classes", "classes", fmt_int), ("slope", "slope", f3),
            ("slope_stderr", "slope se", f3), ("slope_ci_low", "slope lo95", f3),
            ("slope_ci_high", "slope hi95", f3), ("intercept", "intercept", f3),
            ("intercept_stderr", "intercept se", f3), ("intercept_ci_low", "intercept lo95", f3),
            ("intercept_ci_high", "intercept hi95", f3), ("r", "r", f3), ("p_slope_1", "p(slope=1)", f4)],
    "hooker": [("level", "level", fmt_int), ("class", "class", fmt_int), ("class_name", "name", fmt_str),
               ("n_dense", "dense models", fmt_int), ("n_pruned", "pruned models", fmt_int),
               ("dense_recall", "dense recall", f4), ("pruned_recall", "pruned recall", f4),
               ("dense_gap", "dense recall-acc", f4), ("pruned_gap", "pruned recall-acc", f4),
               ("change", "change", f4), ("t", "t", f3), ("dof", "dof", f3), ("p_value", "p", f4),
               ("impacted", "impacted", _yes_no)],
    "pies": [("level", "level", fmt_int), ("class", "class", fmt_int), ("class_name", "name", fmt_str),
             ("examples", "examples", fmt_int), ("pies", "PIEs", fmt_int), ("pie_fraction", "PIE fraction", f4),
             ("pies_pruned_correct", "PIEs pruned-correct", fmt_int),
             ("pies_dense_correct", "PIEs dense-correct", fmt_int)],
    "pie_examples": [("level", "level", fmt_int), ("example", "example", fmt_int), ("label", "label", fmt_int),
                     ("class_name", "name", fmt_str), ("dense_modal", "dense modal", fmt_int),
                     ("pruned_modal", "pruned modal", fmt_int), ("dense_votes", "dense votes", f3),
                     ("pruned_votes", "pruned votes", f3), ("pie", "PIE", _yes_no),
                     ("dense_modal_correct", "dense correct", _yes_no),
                     ("pruned_modal_correct", "pruned correct", _yes_no)],
}


def _sections(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(x.strip() for x in text.split(",") if x.strip()))
    bad = [n for n in names if n not in ALL_SECTIONS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown section {bad[0] if bad else text!r}; choose from: "
                                         f"{', '.join(ALL_SECTIONS)} (comma-separated)")
    return names


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fairness",
        help="per-class accuracy drops under pruning; with several seeds, Hooker et al.'s test and PIEs",
        description="Measure whether pruning hurts some classes more than the overall accuracy shows "
        "(Paganini 2020, 'Prune Responsibly'; Hooker et al. 2019). For every level of every FILE: each class's "
        "accuracy (recall, a fraction), its dense (level 0) value, the drop, the overall drop and the class's "
        "drop minus the overall drop; and the intensification fit, an OLS of class accuracy on dense class "
        "accuracy across classes (slope > 1: classes weak before pruning lose more), with 95% confidence "
        "intervals. Given several runs (seeds) of one method evaluated on one test set, also Hooker et al.'s "
        "per-class Welch t-test of (class recall - accuracy) between the dense models (level 0 of each run) and "
        "the pruned models (--level of each run), and the pruning-identified exemplars (PIEs): test examples "
        "whose modal prediction over the pruned models differs from that over the dense models.",
        epilog=example_epilog(
            "ticketlab fairness runs/lenet_s1.h5",
            "ticketlab fairness runs/lenet_s*.h5 --level 8 --what hooker,pies",
            "ticketlab fairness runs/lenet_s*.h5 --report fairness.html",
            "ticketlab fairness runs/lenet_s*.h5 --json > fairness.json",
            "ticketlab fairness runs/lenet_s*.h5 --csv --what drops > drops.csv",
        ),
    )
    add_selection_arguments(p)
    for action in p._actions:  # the shared --level help speaks of 'the last'; here the default differs
        if action.dest == "level":
            action.help = ("pruned level compared with level 0 by the Hooker test and PIEs "
                           "(default: the last level common to all files)")
    p.add_argument("--what", type=_sections, default=None, metavar="SECTION[,SECTION]",
                   help=f"sections to print: {', '.join(ALL_SECTIONS)} (default: all but pie_examples)")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level of the Hooker test (default 0.05)")
    p.add_argument("--shift", choices=SHIFTS, default="population",
                   help="subtract from class recall the population's mean accuracy (Hooker et al.'s code, "
                   "default) or each model's own accuracy")
    p.add_argument("--ties", choices=TIES, default="largest",
                   help="modal prediction among equally frequent labels: the largest label (Hooker et al.'s "
                   "code, default) or the smallest")
    p.add_argument("--report", metavar="OUT.html", help="also write a self-contained HTML report")
    add_output_arguments(p)
    p.set_defaults(func=run)


# -- reading --------------------------------------------------------------------------------------------------


def _resolve(args: argparse.Namespace) -> tuple[list[Selection], int]:
    """Open the files; the pruned level is --level, FILE:LEVEL, or the last level common to all files."""
    selections = select(args.files, args.level)
    if args.level is None:
        common = set(selections[0].ticket.levels)
        for s in selections[1:]:
            common &= set(s.ticket.levels)
        common.discard(0)
        own = [parse_spec(s.spec)[1] is not None for s in selections]
        if not all(own):
            if not common:
                raise TicketFileError("the files have no pruned level in common (levels: "
                                      + "; ".join(f"{s.path.name}: {_levels_text(s.ticket.levels)}"
                                                  for s in selections) + "); choose one with --level N")
            selections = [s if o else dataclasses.replace(s, level=max(common)) for s, o in zip(selections, own)]
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


def _levels_text(levels: list[int]) -> str:
    if not levels:
        return "none"
    return f"{levels[0]}-{levels[-1]}" if levels == list(range(levels[0], levels[-1] + 1)) else ",".join(
        map(str, levels))


def _read_run(s: Selection, name: str, level: int, num_classes: int, n_test: int | None) -> FairnessRun:
    t = s.ticket
    levels = t.levels
    if 0 not in levels:
        raise TicketFileError(f"{s.path}: has no level 0 (the dense network), which every drop is measured from")
    per_class, acc, dens, preds = [], [], [], {}
    for lv in levels:
        ev = t.evaluation(lv)
        if ev is None:
            raise TicketFileError(f"{s.path}: level {lv} has no test-set evaluation; fairness needs one per level")
        if ev.num_classes != num_classes:
            raise TicketFileError(f"{s.path}: level {lv} is evaluated on {ev.num_classes} classes, not "
                                  f"{num_classes} like the other files and levels")
        if n_test is not None and ev.predictions.size != n_test:
            raise TicketFileError(f"{s.path}: level {lv} has {ev.predictions.size:,} predictions for "
                                  f"{n_test:,} test labels")
        per_class.append(ev.per_class_accuracy)
        acc.append(ev.accuracy)
        dens.append(t.level_record(lv)["density"])
        if lv in (0, level):
            preds[lv] = ev.predictions
    return FairnessRun(name=name, levels=levels, class_accuracy=np.vstack(per_class), accuracy=np.array(acc),
                       density=np.array(dens), predictions=preds, seed=t.seed)


def load_runs(selections: list[Selection], level: int, names: list[str]
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
    runs = [_read_run(s, n, level, num_classes, None if labels is None else labels.size)
            for s, n in zip(selections, names)]
    return runs, labels, class_names


def _run_names(selections: list[Selection]) -> list[str]:
    names = [s.path.name for s in selections]
    if len(set(names)) < len(names):
        names = [str(s.path) for s in selections]
    return names


def run(args: argparse.Namespace) -> int:
    if not 0 < args.alpha < 1:
        raise ConfigError(f"--alpha must be a number in (0, 1); got {args.alpha}")
    explicit = args.what is not None
    wanted = args.what if explicit else DEFAULT_SECTIONS
    if args.csv and len(wanted) != 1:
        raise ConfigError("--csv prints one table; choose its section with --what, one of: "
                          + ", ".join(ALL_SECTIONS))
    selections, level = _resolve(args)
    check_same_model(selections)
    names = _run_names(selections)
    several = len(selections) > 1
    if not several:
        asked = [w for w in wanted if w in POPULATION_SECTIONS]
        if explicit and asked:
            raise ConfigError(f"section {asked[0]!r} compares populations of models and needs at least two runs "
                              "(e.g. one file per seed); give several FILEs")
        wanted = tuple(w for w in wanted if w not in POPULATION_SECTIONS)

    runs, labels, class_names = load_runs(selections, level, names)
    methods = {s.ticket.method for s in selections}
    if len(methods) > 1:
        print(f"ticketlab fairness: warning: the runs were made by different methods ({'; '.join(sorted(methods))}); "
              "populations should be runs (seeds) of one method", file=sys.stderr)
    seeds = [s.ticket.seed for s in selections if s.ticket.seed is not None]
    if len(set(seeds)) < len(seeds):
        print(f"ticketlab fairness: warning: several files have the same seed ({seeds}); are they the same run?",
              file=sys.stderr)

    compute = set(wanted)
    if args.report:  # the page shows every section that the runs allow
        compute |= {"drops", "fit"} | ({"hooker", "pies"} if several else set())
    result = fairness_analysis(runs, level, labels=labels, class_names=class_names, alpha=args.alpha,
                               shift=args.shift, ties=args.ties, sections=[s for s in SECTIONS if s in compute])
    run_records = [{
        "run": r.name, "seed": r.seed, "method": s.ticket.method, "levels": _levels_text(list(r.levels)),
        "level": level, "density": float(r.density[r.row(level)]), "dense_accuracy": float(r.accuracy[r.row(0)]),
        "accuracy": float(r.accuracy[r.row(level)]),
    } for r, s in zip(runs, selections)]
    records: dict[str, list[dict[str, Any]]] = {"runs": run_records}
    for key, frame in result.items():
        if key == "pie_examples":
            frame = frame[frame["pie"]]
        records[key] = frame.to_dict("records")

    if args.report:
        from ticketlab._version import __version__
        from ticketlab.analysis.report_html import fairness_report

        page = fairness_report(result, runs=run_records, level=level, alpha=args.alpha, shift=args.shift,
                               ties=args.ties, generator=f"ticketlab {__version__}")
        path = page.write(args.report)
        print(f"ticketlab fairness: wrote {path}", file=sys.stderr)

    if args.json:
        print(to_json({k: [{c[0]: r.get(c[0]) for c in COLUMNS[k]} for r in records[k]]
                       for k in ALL_SECTIONS if k in wanted and k in records}))
        return 0
    titles = _titles(level, args)
    blocks = [k for k in ALL_SECTIONS if k in wanted and k in records]
    for i, key in enumerate(blocks):
        if i and not args.csv:
            print()
        emit(args, records[key], COLUMNS[key], title=titles[key])
    if not several and not explicit and not args.csv:
        print("\n(Hooker et al.'s test and PIEs need several runs of one method, e.g. one file per seed.)")
    return 0


def _titles(level: int, args: argparse.Namespace) -> dict[str, str]:
    shift = "population mean accuracy" if args.shift == "population" else "the model's accuracy"
    return {
        "runs": f"runs (level {level} is compared with level 0, the dense network)",
        "drops": "per-class accuracy drops (fractions): drop = dense class acc - class acc; "
                 "excess drop = drop - overall drop",
        "fit": "intensification fit per level: class acc = intercept + slope * dense class acc (OLS across "
               "classes; 95% CI from t with C-2 dof; slope > 1: weak classes lose more)",
        "hooker": f"Hooker et al. per-class Welch t-test of (class recall - {shift}), dense (level 0) vs pruned "
                  f"(level {level}) models; impacted: p <= {args.alpha:g}",
        "pies": f"pruning-identified exemplars at level {level} per class (modal prediction of the pruned models "
                f"differs from that of the dense models; ties go to the {args.ties} label)",
        "pie_examples": f"pruning-identified exemplars at level {level}",
    }
