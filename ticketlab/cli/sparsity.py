"""``ticketlab sparsity FILE [...]``: size, kept, density, sparsity and compression per level and layer.

A thin layer over :func:`ticketlab.frames.sparsity_frames`, which reads only the per-tensor kept counts stored
with every level (no mask is unpacked), so it is instant on any ticket. The analysis is
:func:`ticketlab.analysis.sparsity.sparsity_table`.
"""

from __future__ import annotations

import argparse
from typing import Any

from ticketlab.cli import example_epilog
from ticketlab.cli._args import add_output_arguments, emit
from ticketlab.cli._output import fmt_float, fmt_int, fmt_ratio, fmt_str


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sparsity",
        help="per-level, per-layer size, kept weights, density, sparsity and compression of ticket files",
        description="For every level (or the one chosen by --level or FILE:LEVEL) and every masked tensor: size "
        "(weights), kept, density (kept/size), sparsity (1 - density) and compression (size/kept), then the "
        "total over all masked tensors. Tensors that keep nothing are flagged 'fully pruned', those that keep "
        "everything 'untouched'. With several files (one model) the rows carry file, model, method and seed, "
        "so --csv gives one tidy table for comparing methods.",
        epilog=example_epilog(
            "ticketlab sparsity run.h5                      # every level",
            "ticketlab sparsity run.h5 --level 5            # one level",
            "ticketlab sparsity layer.h5 global.h5 --level 8 --csv > sparsity.csv",
        ),
    )
    p.add_argument("files", nargs="+", metavar="FILE[:LEVEL]",
                   help="ticket files, each optionally with ':LEVEL' (default: every level)")
    p.add_argument("--level", type=int, help="level to show for every file without ':LEVEL' (default: all levels)")
    add_output_arguments(p)
    p.set_defaults(func=run)


def _flag(row: dict[str, Any]) -> str:
    if row["fully_pruned"]:
        return "fully pruned"
    if row["untouched"]:
        return "untouched"
    return ""


TABLE_COLUMNS = [
    ("level", "level", fmt_str),
    ("layer", "layer", fmt_str),
    ("size", "size", fmt_int),
    ("kept", "kept", fmt_int),
    ("density", "density", fmt_float(4)),
    ("sparsity", "sparsity", fmt_float(4)),
    ("compression", "compression", fmt_ratio),
    ("flag", "flag", fmt_str),
]
RECORD_KEYS = ["file", "model", "method", "seed", "level", "layer", "kind", "pruned", "size", "kept", "density",
               "sparsity", "compression", "fully_pruned", "untouched"]


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from ticketlab.frames import sparsity_frames

    frames = sparsity_frames(args.files, args.level)
    if args.json or args.csv:
        records = pd.concat(frames, ignore_index=True).to_dict("records")
        emit(args, records, [(k, k, fmt_str) for k in RECORD_KEYS])
        return 0
    for i, f in enumerate(frames):
        rows = [{**r, "flag": _flag(r)} for r in f.to_dict("records")]
        r = rows[0]
        title = (f"{r['file']}: model {r['model']}, method {r['method'] or '-'}, "
                 f"seed {'-' if r['seed'] is None else r['seed']}")
        if i:
            print()
        emit(args, rows, TABLE_COLUMNS, title=title)
    return 0
