"""``ticketlab fairness FILE [...]``: which classes pruning hurts more than the overall accuracy shows.

Sections (choose with ``--what``; default all but ``pie_examples``):

- ``runs``: the runs read and the level compared with the dense network;
- ``drops``: per run, level and class: class accuracy, its dense value, the drop, the overall drop, and the
  class's drop minus the overall drop (every level of every run);
- ``fit``: per run and level, OLS of class accuracy on dense class accuracy across classes, with 95% CIs, and
  ``null_slope``: the slope a uniform shift gives, below 1 because noise in the dense class accuracies
  attenuates it (estimated from two runs or more of the method; NaN from one run); ``p_slope_null`` tests the slope
  against it, ``p_slope_1`` against 1 (which noise alone can reject), and a ``caveat`` says which to read;
- ``hooker`` (several runs): Hooker et al.'s per-class Welch t-test, dense population (level 0 of each run)
  against the pruned population (the chosen level of each run), with what the test can detect from so few runs
  (``mde``, ``power``, ``runs_needed``) and a ``caveat`` when the runs are too few;
- ``pies`` (several runs): pruning-identified exemplars counted per class, with the PIEs that rest on a tie
  between labels and a ``caveat`` for few models; ``pie_examples`` lists them.

Files of several methods are grouped into populations (runs of one method, model and dataset, different seeds;
:func:`ticketlab.frames.populations`): ``hooker`` and ``pies`` are computed within each population of two runs or
more, never across methods, and every record names its ``population`` (a column of the text tables too when
there are several).

A study directory (``ticketlab study run``) given in place of files stands for its chain files, each method's
seeds (chains that differ only in their seed) one population.

``--json`` prints one object whose keys are the sections and whose values are lists of records with the same
keys as the table columns; ``--csv`` prints one section (name it with ``--what``). Definitions are in
:mod:`ticketlab.analysis.fairness`; the files are read by :func:`ticketlab.frames.fairness_of_files` and the
``--report`` page is :func:`ticketlab.report.fairness_page`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ticketlab.analysis.fairness import EFFECT, SECTIONS, SHIFTS, TIES
from ticketlab.cli import example_epilog
from ticketlab.cli._args import add_output_arguments, add_selection_arguments, emit
from ticketlab.cli._output import fmt_float, fmt_int, fmt_str, to_json
from ticketlab.cli.study import accept_study_directory
from ticketlab.errors import ConfigError
from ticketlab.outputs import HTML_SUFFIXES, check_output, prepare_output
from ticketlab.frames import POPULATION_SECTIONS, fairness_of_files, study_argument

ALL_SECTIONS = ("runs",) + SECTIONS
DEFAULT_SECTIONS = tuple(s for s in ALL_SECTIONS if s != "pie_examples")


def _yes_no(v: Any) -> str:
    return "-" if v is None else ("yes" if v else "no")


def _caveat(v: Any) -> str:
    return v if v else "-"


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
            ("slope_ci_high", "slope hi95", f3), ("null_slope", "null slope", f3),
            ("p_slope_null", "p(slope=null)", f4), ("intercept", "intercept", f3),
            ("intercept_stderr", "intercept se", f3), ("intercept_ci_low", "intercept lo95", f3),
            ("intercept_ci_high", "intercept hi95", f3), ("r", "r", f3), ("p_slope_1", "p(slope=1)", f4),
            ("reliability", "reliability", f3), ("caveat", "caveat", _caveat)],
    "hooker": [("level", "level", fmt_int), ("class", "class", fmt_int), ("class_name", "name", fmt_str),
               ("n_dense", "dense models", fmt_int), ("n_pruned", "pruned models", fmt_int),
               ("dense_recall", "dense recall", f4), ("pruned_recall", "pruned recall", f4),
               ("dense_gap", "dense recall-acc", f4), ("pruned_gap", "pruned recall-acc", f4),
               ("change", "change", f4), ("t", "t", f3), ("dof", "dof", f3), ("p_value", "p", f4),
               ("impacted", "impacted", _yes_no), ("sd_dense", "dense sd", f4), ("sd_pruned", "pruned sd", f4),
               ("mde", "detectable (80%)", f4), ("power", "power", f3), ("runs_needed", "runs needed", fmt_float(0)),
               ("caveat", "caveat", _caveat)],
    "pies": [("level", "level", fmt_int), ("class", "class", fmt_int), ("class_name", "name", fmt_str),
             ("examples", "examples", fmt_int), ("pies", "PIEs", fmt_int), ("pie_fraction", "PIE fraction", f4),
             ("pies_pruned_correct", "PIEs pruned-correct", fmt_int),
             ("pies_dense_correct", "PIEs dense-correct", fmt_int), ("pies_tied", "PIEs on a tie", fmt_int),
             ("n_dense", "dense models", fmt_int), ("n_pruned", "pruned models", fmt_int),
             ("caveat", "caveat", _caveat)],
    "pie_examples": [("level", "level", fmt_int), ("example", "example", fmt_int), ("label", "label", fmt_int),
                     ("class_name", "name", fmt_str), ("dense_modal", "dense modal", fmt_int),
                     ("pruned_modal", "pruned modal", fmt_int), ("dense_votes", "dense votes", f3),
                     ("pruned_votes", "pruned votes", f3), ("pie", "PIE", _yes_no),
                     ("dense_modal_correct", "dense correct", _yes_no),
                     ("pruned_modal_correct", "pruned correct", _yes_no), ("dense_tie", "dense tie", _yes_no),
                     ("pruned_tie", "pruned tie", _yes_no)],
}
POPULATION = ("population", "population", fmt_str)


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
        "intervals; noise in a run's dense class accuracies pulls this slope towards 0, so with several runs of "
        "a method it is also tested against the slope a uniform shift gives under that noise (null slope). "
        "Given several runs (seeds) of one method evaluated on one test set, also Hooker et al.'s "
        "per-class Welch t-test of (class recall - accuracy) between the dense models (level 0 of each run) and "
        "the pruned models (--level of each run), and the pruning-identified exemplars (PIEs): test examples "
        "whose modal prediction over the pruned models differs from that over the dense models. Files of several "
        "methods are split into populations (runs of one method, model and dataset) and these two are computed "
        "within each. Each test states the smallest change it detects with 80% power, its power for a change of "
        "--effect and the runs per side that change needs; a caveat says when the runs are too few (fewer than 3 "
        "a side, Welch df below 3, or power below 80%). Given a study directory DIR, its chains are the files and "
        "each method's seeds (chains that differ only in their seed) are one population.",
        epilog=example_epilog(
            "ticketlab fairness runs/lenet_s1.h5",
            "ticketlab fairness runs/lenet_s*.h5 --level 8 --what hooker,pies",
            "ticketlab fairness runs/lenet_s*.h5 --report fairness.html",
            "ticketlab fairness runs/lenet_s*.h5 --json > fairness.json",
            "ticketlab fairness runs/lenet_s*.h5 --csv --what drops > drops.csv",
            "ticketlab fairness runs/rewinding --what hooker        # a study: each method's seeds a population",
        ),
    )
    add_selection_arguments(p)
    accept_study_directory(p)
    for action in p._actions:  # the shared --level help speaks of 'the last'; here the default differs
        if action.dest == "level":
            action.help = ("pruned level compared with level 0 by the Hooker test and PIEs "
                           "(default: the last level common to all files)")
    p.add_argument("--what", type=_sections, default=None, metavar="SECTION[,SECTION]",
                   help=f"sections to print: {', '.join(ALL_SECTIONS)} (default: all but pie_examples)")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level of the Hooker test (default 0.05)")
    p.add_argument("--shift", choices=SHIFTS.names(), default="population",
                   help="subtract from class recall the population's mean accuracy (Hooker et al.'s code, "
                   "default) or each model's own accuracy")
    p.add_argument("--effect", type=float, default=EFFECT, metavar="CHANGE",
                   help=f"the change in (recall - accuracy), a fraction, that the Hooker test's power and runs "
                   f"needed are stated for (default {EFFECT:g}, one percentage point)")
    p.add_argument("--ties", choices=TIES.names(), default="largest",
                   help="modal prediction among equally frequent labels: the largest label (Hooker et al.'s "
                   "code, default) or the smallest")
    p.add_argument("--report", metavar="OUT.html", help="also write a self-contained HTML report (missing "
                   "directories are created)")
    p.add_argument("--overwrite", action="store_true", help="replace --report's file if it exists")
    add_output_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.report:  # a bad --report (an input, an existing file, a wrong suffix) is refused before any work
        check_output(args.report, inputs=args.files, overwrite=args.overwrite, suffixes=HTML_SUFFIXES,
                     what="--report")
    explicit = args.what is not None
    wanted = args.what if explicit else DEFAULT_SECTIONS
    if args.csv and len(wanted) != 1:
        raise ConfigError("--csv prints one table; choose its section with --what, one of: "
                          + ", ".join(ALL_SECTIONS))
    specs, level, groups = args.files, args.level, None
    found = study_argument(args.files, args.level)
    if found is not None:  # a study: its chain files, each method's seeds one population
        study, level = found
        specs, groups = study.files, study.populations()
    several = len(specs) > 1
    asked = [w for w in wanted if w in POPULATION_SECTIONS]
    if not several and explicit and asked:
        raise ConfigError(f"section {asked[0]!r} compares populations of models and needs at least two runs "
                          "(e.g. one file per seed); give several FILEs")
    compute = set(wanted)
    if args.report:  # the page shows every section that the runs allow
        compute |= {"drops", "fit", "hooker", "pies"}
    result = fairness_of_files(specs, level=level, sections=[s for s in SECTIONS if s in compute],
                               alpha=args.alpha, shift=args.shift, ties=args.ties, effect=args.effect, groups=groups)
    if explicit and asked and not any(k in result.sections for k in asked):
        raise ConfigError(f"section {asked[0]!r} compares populations of models and needs at least two runs of one "
                          f"method, but the files hold {len(result.populations)} methods with one run each: "
                          + "; ".join(p["population"] for p in result.populations))
    for warning in result.warnings:
        print(f"ticketlab fairness: warning: {warning}", file=sys.stderr)
    level = result.level
    records: dict[str, list[dict[str, Any]]] = {"runs": result.runs}
    for key, frame in result.sections.items():
        if key == "pie_examples":
            frame = frame[frame["pie"]]
        records[key] = frame.to_dict("records")

    if args.report:
        from ticketlab._version import __version__
        from ticketlab.report import fairness_page

        page = fairness_page(result.sections, runs=result.runs, level=level, alpha=args.alpha, shift=args.shift,
                             ties=args.ties, generator=f"ticketlab {__version__}", effect=args.effect)
        with prepare_output(args.report, inputs=args.files, overwrite=args.overwrite, suffixes=HTML_SUFFIXES,
                            what="--report") as out:
            path = page.write(out)
        print(f"ticketlab fairness: wrote {path}", file=sys.stderr)

    blocks = [k for k in ALL_SECTIONS if k in wanted and k in records]
    if args.json or args.csv:  # every record names its population
        columns = {k: COLUMNS[k] + [POPULATION] for k in blocks}
    else:  # the tables name it when there are several
        columns = {k: ([POPULATION] if len(result.populations) > 1 else []) + COLUMNS[k] for k in blocks}
    if args.json:
        print(to_json({k: [{c[0]: r.get(c[0]) for c in columns[k]} for r in records[k]] for k in blocks}))
        return 0
    titles = _titles(level, args)
    if len(result.populations) > 1 and not args.csv:
        print(f"{len(result.populations)} populations (runs of one method; Hooker et al.'s test and PIEs are "
              "computed within each): " + "; ".join(f"{p['population']} ({p['runs']} run"
                                                     f"{'s' if p['runs'] != 1 else ''})"
                                                     for p in result.populations) + "\n")
    for i, key in enumerate(blocks):
        if i and not args.csv:
            print()
        emit(args, records[key], columns[key], title=titles[key])
    if not several and not explicit and not args.csv:
        print("\n(Hooker et al.'s test, PIEs and the fit's null slope need several runs of one method, e.g. one "
              "file per seed.)")
    return 0


def _titles(level: int, args: argparse.Namespace) -> dict[str, str]:
    shift = "population mean accuracy" if args.shift == "population" else "the model's accuracy"
    return {
        "runs": f"runs (level {level} is compared with level 0, the dense network)",
        "drops": "per-class accuracy drops (fractions): drop = dense class acc - class acc; "
                 "excess drop = drop - overall drop",
        "fit": "intensification fit per level: class acc = intercept + slope * dense class acc (OLS across "
               "classes; 95% CI from t with C-2 dof). Noise in a run's dense class accuracies pulls the slope "
               "towards 0: a uniform shift gives about null slope (estimated from the method's runs), not 1, so "
               "compare slope with null slope (p(slope=null)); slope > null slope: weak classes lose more. "
               "p(slope=1) can reject for noise alone",
        "hooker": f"Hooker et al. per-class Welch t-test of (class recall - {shift}), dense (level 0) vs pruned "
                  f"(level {level}) models; impacted: p <= {args.alpha:g}. detectable (80%): the smallest change "
                  f"detected with 80% power; power: of detecting a change of {args.effect:g}; runs needed: per "
                  f"side for 80% power at {args.effect:g} (from the observed sd over runs)",
        "pies": f"pruning-identified exemplars at level {level} per class (modal prediction of the pruned models "
                f"differs from that of the dense models; ties go to the {args.ties} label)",
        "pie_examples": f"pruning-identified exemplars at level {level}",
    }
