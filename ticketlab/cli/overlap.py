"""``ticketlab overlap A B [C ...]``: how much masks overlap, per layer and in total, beside the chance level.

A thin layer over :func:`ticketlab.frames.compare_files`, which reads the files one layer at a time (one tensor
of each file in memory, bit-packed for counting), so tickets far larger than memory can be compared. The analysis
itself is :mod:`ticketlab.analysis.overlap`. Given a study directory, every pair of its chains is compared at one
matched level (:func:`ticketlab.frames.study_overlap`) and summarised method by method
(:func:`ticketlab.frames.method_overlap`).
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from ticketlab.analysis.overlap import METRICS, PVALUE_FLOOR, PVALUE_METHODS
from ticketlab.cli import example_epilog
from ticketlab.cli._args import add_output_arguments, add_selection_arguments, emit
from ticketlab.cli._output import fmt_float, fmt_int, fmt_ratio, fmt_str
from ticketlab.cli.study import accept_study_directory


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "overlap",
        help="compare the masks of two or more tickets: intersection, union, Jaccard, Hamming, vs chance",
        description="For every pair of files, per layer and in total: the weights each mask keeps (kept_a, "
        "kept_b), kept by both (intersection) and by either (union), Jaccard = intersection/union (IoU), hamming = "
        "weights kept by exactly one mask (a count; --metric hamming_fraction divides it by size), overlap "
        "coefficient = intersection/min(kept_a, kept_b), and the chance level: the expected intersection and Jaccard if each mask kept the same number "
        "of weights in every layer uniformly at random (hypergeometric, E = kept_a*kept_b/size per layer, summed "
        "for the total; expected Jaccard = E/(kept_a + kept_b - E)), obs/exp = intersection/E, and the one-sided "
        "p-value P(X >= intersection) under chance (exact per layer; for the total an exact convolution of the "
        "per-layer distributions, or a normal approximation for very large models, see --pvalue). Totals pool "
        "all layers' counts. With more than two files the pairwise Jaccard matrix follows. Given a study "
        "directory DIR, every pair of its chains (of one model) is compared at the last pruned level all chains "
        "have done (or --level N); the text output is one line per pair (all layers pooled) and the method x method "
        "mean Jaccard beside chance, pairs with the same seed apart; --json/--csv give every pair and layer, the "
        "records of 'overlap' on the chain files plus the chains' names, methods and seeds.",
        epilog=example_epilog(
            "ticketlab overlap seed0.h5 seed1.h5                 # last level of each",
            "ticketlab overlap seed0.h5:5 seed1.h5:5 seed2.h5:5  # level 5; pairs and a Jaccard matrix",
            "ticketlab overlap run.h5:2 run.h5:8                 # two levels of one run",
            "ticketlab overlap a.h5 b.h5 --metric containment --json > overlap.json",
            "ticketlab overlap runs/rewinding --level 8             # a study: every pair of chains, by method",
        ),
    )
    add_selection_arguments(p)
    accept_study_directory(p)
    p.add_argument("--metric", action="append", default=[], metavar="NAME",
                   help="add a column for another overlap metric (repeatable): "
                   + "; ".join(f"{name}: {m.description}" for name, m in METRICS.items()))
    p.add_argument("--pvalue", choices=PVALUE_METHODS.names(), default="auto",
                   help="method for the total's p-value: exact convolution, normal approximation, or auto "
                   "(convolution unless too costly; default)")
    add_output_arguments(p)
    p.set_defaults(func=run)


def fmt_p(v: Any) -> str:
    """A p-value: 3 decimals, scientific below 0.001, '<1e-130' below the resolution of the exact method."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if v < PVALUE_FLOOR:
        return f"<{PVALUE_FLOOR:.0e}"
    return f"{v:.3f}" if v >= 1e-3 else f"{v:.1e}"


TABLE_COLUMNS = [
    ("layer", "layer", fmt_str),
    ("size", "size", fmt_int),
    ("kept_a", "kept_a", fmt_int),
    ("kept_b", "kept_b", fmt_int),
    ("intersection", "intersection", fmt_int),
    ("union", "union", fmt_int),
    ("hamming", "hamming", fmt_int),  # a count; the hamming_fraction metric is hamming / size
    ("jaccard", "jaccard", fmt_float(4)),
    ("expected_jaccard", "E[jaccard]", fmt_float(4)),
    ("overlap_coefficient", "overlap_coef", fmt_float(4)),
    ("expected_intersection", "E[intersection]", fmt_float(1)),
    ("ratio", "obs/exp", fmt_ratio),
    ("p_value", "p_value", fmt_p),
]


def run(args: argparse.Namespace) -> int:
    from ticketlab.frames import compare_files, study_argument

    study = study_argument(args.files, args.level)
    if study is not None:
        return run_study(args, *study)
    comparison = compare_files(args.files, level=args.level, metrics=args.metric, pvalue_method=args.pvalue)
    if args.json or args.csv:
        emit(args, comparison.frame.to_dict("records"), [(k, k, fmt_str) for k in comparison.columns])
        return 0
    columns = TABLE_COLUMNS + [(m, m, fmt_float(4)) for m in comparison.metrics]
    for n, ((i, j), f) in enumerate(zip(comparison.pairs, comparison.tables)):
        (path_a, level_a), (path_b, level_b) = comparison.masks[i], comparison.masks[j]
        method = f["p_method"].iloc[-1]
        title = (f"A = {path_a} (level {level_a}), B = {path_b} (level {level_b})\n"
                 f"chance: each layer's kept counts placed uniformly at random; total p-value by {method}")
        if n:
            print()
        emit(args, f.to_dict("records"), columns, title=title)
    if len(comparison.masks) > 2:
        matrix = comparison.matrix()
        records = [{"file": label, **{str(k): v for k, v in row.items()}} for label, row in matrix.iterrows()]
        print()
        emit(args, records, [("file", "file", fmt_str)] + [(c, c, fmt_float(4)) for c in matrix.columns],
             title="total Jaccard (intersection / union of all layers), every pair")
    return 0


STUDY_PAIR_COLUMNS = [
    ("chain_a", "chain A", fmt_str),
    ("chain_b", "chain B", fmt_str),
    ("density_a", "density", fmt_float(4)),
    ("intersection", "intersection", fmt_int),
    ("union", "union", fmt_int),
    ("jaccard", "jaccard", fmt_float(4)),
    ("expected_jaccard", "E[jaccard]", fmt_float(4)),
    ("ratio", "obs/exp", fmt_ratio),
    ("p_value", "p_value", fmt_p),
]
METHOD_COLUMNS = [
    ("method_a", "method A", fmt_str),
    ("method_b", "method B", fmt_str),
    ("seeds", "seeds", fmt_str),
    ("pairs", "pairs", fmt_int),
    ("jaccard", "jaccard (mean)", fmt_float(4)),
    ("jaccard_sd", "sd", fmt_float(4)),
    ("jaccard_min", "min", fmt_float(4)),
    ("jaccard_max", "max", fmt_float(4)),
    ("expected_jaccard", "E[jaccard] (mean)", fmt_float(4)),
    ("jaccard_ratio", "jaccard / chance", fmt_ratio),
]


def run_study(args: argparse.Namespace, study: Any, level: int | None) -> int:
    """``ticketlab overlap DIR``: every pair of the study's chains at one matched level, and per pair of methods."""
    from ticketlab.frames import method_overlap, study_overlap

    result = study_overlap(study, level=level, metrics=args.metric, pvalue_method=args.pvalue)
    if args.json or args.csv:
        emit(args, result.frame.to_dict("records"), [(k, k, fmt_str) for k in result.columns])
        return 0
    totals = result.frame[result.frame["layer"] == "total"]
    print(f"study {study.summary()}")
    emit(args, totals.to_dict("records"), STUDY_PAIR_COLUMNS + [(m, m, fmt_float(4)) for m in result.metrics],
         title=f"every pair of chains at level {result.level}, all layers pooled (every layer: --json or --csv); "
         "E[jaccard]: chance, each layer's kept counts placed uniformly at random")
    print()
    emit(args, method_overlap(result.frame).to_dict("records"), METHOD_COLUMNS,
         title="per pair of methods: mean over its pairs of chains (same seed = same initial weights; a method "
         "with itself: its seeds)")
    return 0
