"""``ticketlab overlap A B [C ...]``: how much masks overlap, per layer and in total, beside the chance level.

The files are read one layer at a time (one tensor of each file in memory, bit-packed for counting), so tickets
far larger than memory can be compared. The analysis itself is :mod:`ticketlab.analysis.overlap`.
"""

from __future__ import annotations

import argparse
import contextlib
import math
from itertools import combinations
from typing import Any

from ticketlab.cli import example_epilog
from ticketlab.cli._output import fmt_ratio
from ticketlab.cli._select import (add_output_arguments, add_selection_arguments, check_same_model, emit,
                                   fmt_float, fmt_int, fmt_str, select)
from ticketlab.errors import ConfigError

PVALUE_METHODS = ("auto", "convolution", "normal")  # as ticketlab.analysis.overlap.PVALUE_METHODS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "overlap",
        help="compare the masks of two or more tickets: intersection, union, Jaccard, Hamming, vs chance",
        description="For every pair of files, per layer and in total: the weights each mask keeps (kept_a, "
        "kept_b), kept by both (intersection) and by either (union), Jaccard = intersection/union (IoU), Hamming "
        "distance = weights kept by exactly one mask (a count), overlap coefficient = intersection/min(kept_a, "
        "kept_b), and the chance level: the expected intersection and Jaccard if each mask kept the same number "
        "of weights in every layer uniformly at random (hypergeometric, E = kept_a*kept_b/size per layer, summed "
        "for the total; expected Jaccard = E/(kept_a + kept_b - E)), obs/exp = intersection/E, and the one-sided "
        "p-value P(X >= intersection) under chance (exact per layer; for the total an exact convolution of the "
        "per-layer distributions, or a normal approximation for very large models, see --pvalue). Totals pool "
        "all layers' counts. With more than two files the pairwise Jaccard matrix follows.",
        epilog=example_epilog(
            "ticketlab overlap seed0.h5 seed1.h5                 # last level of each",
            "ticketlab overlap seed0.h5:5 seed1.h5:5 seed2.h5:5  # level 5; pairs and a Jaccard matrix",
            "ticketlab overlap run.h5:2 run.h5:8                 # two levels of one run",
            "ticketlab overlap a.h5 b.h5 --metric containment --json > overlap.json",
        ),
    )
    add_selection_arguments(p)
    p.add_argument("--metric", action="append", default=[], metavar="NAME",
                   help="add a column for another overlap metric (repeatable): containment (fraction of A's kept "
                   "weights B keeps), cosine_overlap, dice_overlap, hamming_distance (fraction), jaccard_distance")
    p.add_argument("--pvalue", choices=PVALUE_METHODS, default="auto",
                   help="method for the total's p-value: exact convolution, normal approximation, or auto "
                   "(convolution unless too costly; default)")
    add_output_arguments(p)
    p.set_defaults(func=run)


def fmt_p(v: Any) -> str:
    """A p-value: 3 decimals, scientific below 0.001, '<1e-130' below the resolution of the exact method."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if v < 1e-130:  # ticketlab.analysis.overlap.PVALUE_FLOOR
        return "<1e-130"
    return f"{v:.3f}" if v >= 1e-3 else f"{v:.1e}"


TABLE_COLUMNS = [
    ("layer", "layer", fmt_str),
    ("size", "size", fmt_int),
    ("kept_a", "kept_a", fmt_int),
    ("kept_b", "kept_b", fmt_int),
    ("intersection", "intersection", fmt_int),
    ("union", "union", fmt_int),
    ("hamming", "hamming", fmt_int),
    ("jaccard", "jaccard", fmt_float(4)),
    ("expected_jaccard", "E[jaccard]", fmt_float(4)),
    ("overlap_coefficient", "overlap_coef", fmt_float(4)),
    ("expected_intersection", "E[intersection]", fmt_float(1)),
    ("ratio", "obs/exp", fmt_ratio),
    ("p_value", "p_value", fmt_p),
]


def run(args: argparse.Namespace) -> int:
    from ticketlab.analysis.overlap import (OVERLAP_COLUMNS, get_metric, jaccard_matrix, overlap_table,
                                            packed_overlap_counts)
    import pandas as pd

    if len(args.files) < 2:
        raise ConfigError("overlap needs at least two ticket files, or two levels of one file "
                          "(e.g. run.h5:1 run.h5:5)")
    extra = [get_metric(m).name for m in dict.fromkeys(args.metric)]
    sels = select(args.files, args.level)
    tensors = check_same_model(sels)
    pairs = list(combinations(range(len(sels)), 2))
    with contextlib.ExitStack() as stack:
        for s in sels:
            stack.enter_context(s.ticket)
        kept = [s.ticket.kept(s.level) for s in sels]
        counts: dict[tuple[int, int], dict] = {p: {} for p in pairs}
        for t in tensors:  # one layer of every file in memory at a time
            packed = [s.ticket.packed_mask(s.level, t.name) for s in sels]  # as stored: no unpacking
            for i, j in pairs:
                counts[(i, j)][t.name] = packed_overlap_counts(packed[i], packed[j], t.size,
                                                               kept_a=kept[i][t.name], kept_b=kept[j][t.name])
            del packed
    frames = [overlap_table(counts[(i, j)], metrics=extra, pvalue_method=args.pvalue,
                            a=str(sels[i].path), b=str(sels[j].path), level_a=sels[i].level, level_b=sels[j].level)
              for i, j in pairs]
    frame = pd.concat(frames, ignore_index=True)
    if args.json or args.csv:
        keys = ["a", "b", "level_a", "level_b"] + OVERLAP_COLUMNS + extra
        emit(args, frame.to_dict("records"), [(k, k, fmt_str) for k in keys])
        return 0
    columns = TABLE_COLUMNS + [(m, m, fmt_float(4)) for m in extra]
    for (i, j), f in zip(pairs, frames):
        a, b = sels[i], sels[j]
        method = f["p_method"].iloc[-1]
        title = (f"A = {a.path} (level {a.level}), B = {b.path} (level {b.level})\n"
                 f"chance: each layer's kept counts placed uniformly at random; total p-value by {method}")
        if (i, j) != pairs[0]:
            print()
        emit(args, f.to_dict("records"), columns, title=title)
    if len(sels) > 2:
        labels = _labels(sels)
        named = frame.assign(a=[labels[i] for i, _ in pairs for _ in range(len(tensors) + 1)],
                             b=[labels[j] for _, j in pairs for _ in range(len(tensors) + 1)])
        matrix = jaccard_matrix(named)
        records = [{"file": label, **{str(k): v for k, v in row.items()}} for label, row in matrix.iterrows()]
        print()
        emit(args, records, [("file", "file", fmt_str)] + [(c, c, fmt_float(4)) for c in matrix.columns],
             title="total Jaccard (intersection / union of all layers), every pair")
    return 0


def _labels(sels: list) -> list[str]:
    """Short unique names for the matrix: the file name, with ':LEVEL' when a name repeats."""
    names = [s.path.name for s in sels]
    out = [f"{n}:{s.level}" if names.count(n) > 1 else n for n, s in zip(names, sels)]
    return [f"{label} ({k})" if out.count(label) > 1 else label for k, label in enumerate(out)]
