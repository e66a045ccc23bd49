"""``ticketlab study run|status|frame``: a grid of IMP chains as one resumable job, and its tidy results.

A thin layer over :mod:`ticketlab.study`: parse, call one library function, format.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ticketlab.cli import example_epilog


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "study",
        help="run a grid of IMP chains (seeds x reset modes x ...) as one resumable job; its status and table",
        description="A study is a TOML spec: a preset, a [grid] whose lists are axes (any 'ticketlab train' flag "
        "without its dashes: seed, reset, strategy, rate, model, ...) and a [set] of overrides for every chain. "
        "'study run' expands the grid into one chain per combination, named by its axis values, and writes "
        "DIR/manifest.json and one ticket file per chain in DIR/chains/. Run it again to continue after an "
        "interruption; a finished study is left alone.",
        epilog=example_epilog(
            "ticketlab study run studies/rewinding.toml --out runs/rewinding",
            "ticketlab study run studies/rewinding.toml --out runs/rewinding --workers 2 -v",
            "ticketlab study run studies/rewinding.toml --out runs/rewinding --scheduler tcp://head:8786",
            "ticketlab study status runs/rewinding",
            "ticketlab study frame runs/rewinding --out rewinding.csv",
        ),
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    p.set_defaults(func=lambda args: _help(p))

    r = actions.add_parser(
        "run", help="run or continue every chain of a spec",
        description="Run every chain of SPEC that is not complete in DIR, each resumed from its last completed "
        "level. A finished study is not touched; a spec that differs from the one DIR was made with is refused, "
        "naming the difference, unless --extend and the difference only adds axis values or levels.",
        epilog=example_epilog(
            "ticketlab study run studies/rewinding.toml --out runs/rewinding",
            "ticketlab study run studies/rewinding.toml --out runs/rewinding --extend   # after adding seeds",
            "ticketlab study run spec.toml --out /shared/study --scheduler tcp://head:8786 --device cuda",
        ),
    )
    r.add_argument("spec", metavar="SPEC.toml", help="the study spec")
    r.add_argument("--out", metavar="DIR", help="the study directory (default: runs/<spec name>)")
    r.add_argument("--extend", action="store_true", help="accept a spec that adds axis values (new chains) or "
                   "raises levels over what DIR was made with")
    r.add_argument("--workers", type=int, metavar="N", help="local worker processes (default: one per GPU when "
                   "chains run on CUDA, else 1, in this process)")
    r.add_argument("--chains-per-process", type=int, default=1, metavar="K",
                   help="chains per task (default 1: every chain file equals a standalone 'ticketlab train')")
    r.add_argument("--scheduler", metavar="tcp://HOST:8786",
                   help="run the tasks on this Dask scheduler's workers (pip install 'ticketlab[distributed]')")
    r.add_argument("--no-shared-fs", dest="shared_fs", action="store_false",
                   help="with --scheduler: the workers do not see DIR; chain files travel through Dask")
    r.add_argument("--threads", type=int, metavar="T",
                   help="torch threads per chain (default: as 'ticketlab train' here, which CPU results equal bit "
                   "for bit only at the same count); --threads 1 is faster with several CPU workers")
    r.add_argument("--retries", type=int, default=2, metavar="N",
                   help="retries of a task whose worker died (default 2)")
    r.add_argument("--device", help="override the spec's device: auto, cpu, cuda, cuda:N or mps")
    r.add_argument("--data-dir", help="override the spec's data-dir (where datasets are read)")
    r.add_argument("-v", "--verbose", action="store_true", help="one line per completed level of each chain")
    r.add_argument("--quiet", action="store_true", help="no progress bar and no notes")
    r.set_defaults(func=run)

    s = actions.add_parser("status", help="chains x levels done, failures and time",
                           description="One line per chain: status (complete, partial, pending or failed), "
                           "levels done of planned, seconds of training stored in its file, attempts and the "
                           "last error; then the totals.")
    s.add_argument("directory", metavar="DIR", help="the study directory")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--json", action="store_true", help="print JSON records instead of a table")
    g.add_argument("--csv", action="store_true", help="print CSV with the same columns")
    s.set_defaults(func=status)

    f = actions.add_parser("frame", help="the tidy table: one row per chain x level x branch",
                           description="Write the study's results as one row per chain x level x branch: the "
                           "axis values, chain, level, branch ('main' or the control), method (the axis values but "
                           "the seed: a method's chains are its seeds), seed, density, accuracy, early-stop "
                           "iteration and per-class accuracy (columns 'accuracy[CLASS]'). For the figures, "
                           "'ticketlab report DIR'; overlap, fairness and structure take DIR too.",
                           epilog=example_epilog("ticketlab study frame runs/rewinding --out rewinding.csv",
                                                 "ticketlab study frame runs/rewinding --out rewinding.parquet"))
    f.add_argument("directory", metavar="DIR", help="the study directory")
    f.add_argument("--out", required=True, metavar="FILE", help="the table to write: .csv or .parquet")
    f.add_argument("--no-per-class", dest="per_class", action="store_false", help="leave out per-class accuracy")
    f.set_defaults(func=frame)


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from ticketlab.study import load_spec, run_study

    spec = load_spec(args.spec)
    out = Path(args.out) if args.out else Path("runs") / Path(args.spec).stem

    def note(line: str) -> None:
        tqdm.write(line, file=sys.stderr)

    try:
        outcome = run_study(spec, out, extend=args.extend, workers=args.workers, scheduler=args.scheduler,
                            shared_fs=args.shared_fs, chains_per_process=args.chains_per_process,
                            device=args.device, data_dir=args.data_dir, threads=args.threads,
                            retries=args.retries,
                            progress=False if args.quiet else None, log=None if args.quiet else note,
                            verbose=args.verbose)
    except KeyboardInterrupt:
        print(f"\nticketlab study: interrupted; every completed level is saved in {out}. Continue with the same "
              "command.", file=sys.stderr)
        return 130
    if outcome.failed:
        print(f"ticketlab study: {len(outcome.failed)} of {outcome.chains} chains failed (see 'ticketlab study "
              f"status {out}'); run the same command again to retry them", file=sys.stderr)
        return 1
    if not args.quiet:
        print(f"ticketlab study: {outcome.chains} chains complete in {out}", file=sys.stderr)
    return 0


def status(args: argparse.Namespace) -> int:
    from ticketlab.cli._output import fmt_float, fmt_int, fmt_str, table, to_csv, to_json
    from ticketlab.study import study_status

    records = study_status(args.directory)
    columns = [("chain", "chain", fmt_str), ("status", "status", fmt_str), ("levels_done", "done", fmt_int),
               ("levels_planned", "planned", fmt_int), ("train_time", "train_s", fmt_float(1)),
               ("wall_time", "wall_s", fmt_float(1)), ("attempts", "attempts", fmt_int), ("error", "error", fmt_str)]
    if args.json:
        print(to_json(records))
        return 0
    if args.csv:
        print(to_csv(records, [c[0] for c in columns]), end="")
        return 0
    print(table(records, columns))
    n = len(records)
    by = {s: sum(r["status"] == s for r in records) for s in ("complete", "partial", "pending", "failed")}
    done, planned = sum(r["levels_done"] for r in records), sum(r["levels_planned"] for r in records)
    hours = sum(r["train_time"] for r in records) / 3600
    print(f"\n{by['complete']}/{n} chains complete, {by['partial']} partial, {by['pending']} pending, "
          f"{by['failed']} failed; {done}/{planned} levels; {hours:.2f} h of training stored")
    return 0


def frame(args: argparse.Namespace) -> int:
    from ticketlab.study import study_frame, write_frame

    df = study_frame(args.directory, per_class=args.per_class)
    path = write_frame(df, args.out)
    print(f"ticketlab study frame: wrote {path} ({len(df)} rows x {len(df.columns)} columns)", file=sys.stderr)
    return 0


# ----------------------------------------------------------------------------------------------------------
# A study directory in place of files (overlap, fairness, structure, report)

STUDY_FILES_HELP = ("ticket files, each optionally with ':LEVEL'; or one study directory DIR (from 'ticketlab study "
                    "run'), which stands for all its chains, grouped by method (axis values but the seed)")


def accept_study_directory(parser: argparse.ArgumentParser) -> None:
    """Say in ``parser``'s help that its ``FILE[:LEVEL]`` arguments may be one study directory instead."""
    for action in parser._actions:
        if action.dest == "files":
            action.help = STUDY_FILES_HELP
