"""``ticketlab intersect A B [C ...] --out T.h5``: combine masks into a new ticket (a consensus ticket by default).

The result is a ticket file whose level 0 holds the combined mask, with the initial weights of the first input
(or of ``--init FILE``; none when the first input has none: a mask-only ticket) and a configuration naming its
sources, so that ``ticketlab train --mask T.h5`` (``--fresh-init`` for a mask-only ticket) retrains it. The
library call is :func:`ticketlab.store.derive_ticket` (with :func:`ticketlab.analysis.combine.combine_layer` as
the combination), which writes the file atomically.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

from ticketlab.analysis.combine import MODES
from ticketlab.cli import example_epilog
from ticketlab.cli._args import add_output_arguments, emit
from ticketlab.cli._output import fmt_float, fmt_int, fmt_ratio, fmt_str
from ticketlab.errors import ConfigError
from ticketlab.outputs import TICKET_SUFFIXES, prepare_output
from ticketlab.store import Selection, TicketFile, derive_ticket, select

def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "intersect",
        help="combine the masks of several tickets (intersection, union or vote) into a new ticket file",
        description="Combine masks layer by layer: --mode intersection (default) keeps a weight where every mask "
        "keeps it (Paganini & Forde 2020's consensus ticket), union where any does, vote where at least "
        "--min-votes K do (default: a strict majority). The result is written as level 0 of a new ticket file "
        "with the initial weights of the first input (or --init FILE; a mask-only ticket when the first input has "
        "none, e.g. imported torch-prune masks) and its sources recorded in the file's configuration; retrain it "
        "with 'ticketlab train --mask OUT' (mask-only: add --fresh-init). The table shows the result's density (kept "
        "fraction) beside the chance level: the expected density if every input kept its per-layer counts "
        "uniformly at random and independently (intersection: product of the densities; union: 1 - product of "
        "(1 - density); vote: the Poisson-binomial tail P(at least K)).",
        epilog=example_epilog(
            "ticketlab intersect mnist.h5:2 fashion.h5:2 kmnist.h5:2 --out consensus.h5",
            "ticketlab intersect s0.h5 s1.h5 s2.h5 --mode vote --min-votes 2 --out majority.h5",
            "ticketlab train --mask consensus.h5 --levels 0 --out consensus_trained.h5",
        ),
    )
    p.add_argument("files", nargs="+", metavar="FILE[:LEVEL]", help="two or more ticket files, each optionally "
                   "with ':LEVEL'")
    p.add_argument("--level", type=int, help="level to use for every file without ':LEVEL' (default: the last)")
    p.add_argument("--out", required=True, metavar="FILE.h5", help="the ticket file to write (.h5; missing "
                   "directories are created)")
    p.add_argument("--mode", choices=MODES, default="intersection", help="how to combine (default: intersection)")
    p.add_argument("--min-votes", type=int, metavar="K", help="vote mode: keep weights kept by at least K masks")
    p.add_argument("--init", metavar="FILE", help="take the initial weights from this ticket file instead of the "
                   "first input (without it, inputs without initial weights give a mask-only ticket)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    add_output_arguments(p)
    p.set_defaults(func=run)


TABLE_COLUMNS = [
    ("layer", "layer", fmt_str),
    ("size", "size", fmt_int),
    ("kept", "kept", fmt_int),
    ("density", "density", fmt_float(4)),
    ("expected_density", "E[density] (chance)", fmt_float(4)),
    ("ratio", "obs/exp", fmt_ratio),
    ("min_input_density", "min input density", fmt_float(4)),
    ("max_input_density", "max input density", fmt_float(4)),
    ("compression", "compression", fmt_ratio),
]


def describe(mode: str, k: int, n: int) -> str:
    """The ``method`` recorded in the new file."""
    if mode == "intersection":
        return f"intersection of {n} masks (consensus ticket)"
    if mode == "union":
        return f"union of {n} masks"
    return f"vote: kept by at least {k} of {n} masks"


def run(args: argparse.Namespace) -> int:
    from ticketlab.analysis.combine import COMBINE_COLUMNS, combine_layer, combine_report, resolve_min_votes

    if len(args.files) < 2:
        raise ConfigError("intersect needs at least two ticket files (or two levels of one file, e.g. "
                          "run.h5:1 run.h5:5)")
    k = resolve_min_votes(len(args.files), args.mode, args.min_votes)
    min_votes = k if args.mode == "vote" else None
    with prepare_output(args.out, inputs=[*args.files, args.init], overwrite=args.overwrite,
                        suffixes=TICKET_SUFFIXES) as out:
        sels = select(args.files, args.level)
        init = Selection(args.init, Path(args.init), 0, TicketFile(args.init)) if args.init else None
        method = describe(args.mode, k, len(sels))
        attrs = {"source": "intersect", "mode": args.mode}
        if min_votes is not None:
            attrs["min_votes"] = int(min_votes)
        combined = derive_ticket(
            out, sels, functools.partial(combine_layer, mode=args.mode, min_votes=min_votes), method=method,
            config={"command": "intersect", "mode": args.mode, "min_votes": min_votes}, init=init, attrs=attrs,
            overwrite=args.overwrite,
        )
        with TicketFile(out) as t:
            has_init = "init" in t.checkpoints()
    weights = (f"initial weights from {(init or sels[0]).path}" if has_init else
               f"masks only: {sels[0].path} has no initial weights (retrain with 'ticketlab train --mask {out} "
               "--fresh-init', or take them from a ticket of the same model with --init FILE)")

    sizes = {name: m.size for name, m in combined.items()}
    kept = {name: int(m.sum()) for name, m in combined.items()}
    input_kept = [s.ticket.kept(s.level) for s in sels]
    frame = combine_report(sizes, input_kept, kept, args.mode, min_votes)
    for i, (key, value) in enumerate({"file": str(out), "mode": args.mode, "min_votes": min_votes}.items()):
        frame.insert(i, key, value)
    records = frame.to_dict("records")
    if args.json or args.csv:
        emit(args, records, [(c, c, fmt_str) for c in ["file", "mode", "min_votes"] + COMBINE_COLUMNS])
        if not has_init:
            print(f"ticketlab intersect: note: wrote {out} with {weights}", file=sys.stderr)
        return 0
    names = ", ".join(f"{s.path}:{s.level}" for s in sels)
    title = (f"wrote {out}: level 0 = {method} ({names}); {weights}\n"
             f"density = kept fraction; E[density] = chance level for independent uniformly random masks")
    emit(args, records, TABLE_COLUMNS, title=title)
    return 0
