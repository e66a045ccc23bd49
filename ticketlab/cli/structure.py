"""``ticketlab structure FILE``: structured-like connectivity of a level's masks, and effective sparsity.

A thin layer over :func:`ticketlab.frames.structure_table`, which reads each chosen level's masks and calls
:func:`~ticketlab.analysis.structure.group_structure` (default) or
:func:`~ticketlab.analysis.structure.effective_density` (``--effective``); this prints one table (or JSON/CSV
with the same columns).
"""

from __future__ import annotations

import argparse
import math
import textwrap
from typing import Any

import pandas as pd

from ticketlab.cli import example_epilog
from ticketlab.cli._args import add_output_arguments, add_selection_arguments, emit
from ticketlab.cli._output import fmt_float, fmt_int, fmt_ratio, fmt_str
from ticketlab.cli.study import accept_study_directory


def fmt_p(v: Any) -> str:
    """p-values: 4 decimals, scientific notation below 0.001."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.1e}" if v < 1e-3 else f"{v:.4f}"


STRUCTURE_COLUMNS = [
    ("level", "level", fmt_str),
    ("layer", "layer", fmt_str),
    ("grouping", "grouping", fmt_str),
    ("groups", "groups", fmt_int),
    ("group_size", "weights/group", fmt_int),
    ("density", "density", fmt_float(4)),
    ("fully_pruned", "fully pruned", fmt_int),
    ("fully_pruned_fraction", "fraction", fmt_float(4)),
    ("expected_fully_pruned_fraction", "random mean", fmt_float(4)),
    ("expected_fully_pruned_sd", "random sd", fmt_float(4)),
    ("dispersion", "dispersion", fmt_float(3)),
    ("chi2", "chi2", fmt_float(1)),
    ("dof", "dof", fmt_int),
    ("p_value", "p (chi2)", fmt_p),
]

EFFECTIVE_COLUMNS = [
    ("level", "level", fmt_str),
    ("layer", "layer", fmt_str),
    ("kind", "kind", fmt_str),
    ("size", "size", fmt_int),
    ("kept", "kept", fmt_int),
    ("effective_kept", "effective kept", fmt_int),
    ("density", "density", fmt_float(4)),
    ("effective_density", "effective density", fmt_float(4)),
    ("compression", "compression", fmt_ratio),
    ("effective_compression", "effective compression", fmt_ratio),
    ("in_units", "in units", fmt_int),
    ("inactive_in_units", "inactive in", fmt_int),
    ("out_units", "out units", fmt_int),
    ("inactive_out_units", "inactive out", fmt_int),
]

_STRUCTURE_TITLE = (
    "Fully pruned groups per layer (grouping: output = output units/filters, input = input units/channels, "
    "kernel = one conv kernel) beside the mean and sd of that fraction if each layer's kept weights were placed "
    "uniformly at random; dispersion = chi-square index of per-group kept counts (about 1 if random, > 1 "
    "clustered), p from chi2(dof), upper tail."
)
_EFFECTIVE_TITLE = (
    "Direct and effective density (Vysogorets & Kempe 2021: kept weights on some input-to-output path; biases "
    "ignored, conv layers at channel level); inactive units are on no such path."
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "structure",
        help="structured-like connectivity of masks (fully pruned units, channels, kernels) and effective sparsity",
        description="Per layer, the fraction of output units/filters, input units/channels and (conv) kernels "
        "that unstructured pruning removed completely, beside the expected fraction and its sd if the layer's "
        "kept weights were placed uniformly at random (exact hypergeometric formula), and the dispersion of "
        "per-group kept counts against that random placement (chi-square statistic, index of dispersion and "
        "p-value; --simulations adds a Monte Carlo p-value). With --effective: direct and effective density "
        "(Vysogorets & Kempe 2021) per layer and in total, for plain feed-forward stacks of Linear and Conv "
        "layers only (LeNet, Conv-2/4/6, VGG); residual networks are refused. The level is each file's last "
        "unless --level N or FILE:N says otherwise. Given a study directory DIR, its chains are the files, read at "
        "the last level all chains have done (or --level N, or --all-levels), each row naming its chain, method "
        "(axis values but the seed) and seed.",
        epilog=example_epilog(
            "ticketlab structure runs/conv2.h5",
            "ticketlab structure runs/conv2.h5:5 --simulations 999",
            "ticketlab structure runs/lenet300.h5 --effective --all-levels",
            "ticketlab structure runs/lenet300.h5 --effective --csv > effective.csv",
            "ticketlab structure runs/rewinding --effective           # a study: every chain, by method",
        ),
    )
    add_selection_arguments(p)
    accept_study_directory(p)
    p.add_argument("--all-levels", action="store_true",
                   help="one row per level and layer, for every level of each file")
    p.add_argument("--effective", action="store_true",
                   help="show direct vs effective density (Vysogorets & Kempe) instead of the group structure")
    p.add_argument("--simulations", type=int, default=0, metavar="B",
                   help="add a Monte Carlo p-value of the dispersion from B random placements (default: 0, none)")
    p.add_argument("--seed", type=int, default=0, help="seed of the Monte Carlo draws (default: 0)")
    add_output_arguments(p)
    p.set_defaults(func=run)


def _missing(v: Any) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """DataFrame rows as plain dicts, with every missing value (NA, NaN) as None (``-`` in tables, null in JSON)."""
    return [{k: (None if _missing(v) else v) for k, v in r.items()} for r in df.to_dict("records")]


def run(args: argparse.Namespace) -> int:
    from ticketlab.frames import matched_level, structure_table, study_argument

    specs, level, study = args.files, args.level, None
    found = study_argument(args.files, args.level)
    if found is not None:  # a study: its chain files at one matched level, each row naming its chain
        study, level = found
        specs = study.files
        if not args.all_levels:
            level = matched_level(study, level, pruned=False)
    rows = _records(structure_table(specs, level=level, all_levels=args.all_levels, effective=args.effective,
                                    simulations=args.simulations, seed=args.seed))
    columns = list(EFFECTIVE_COLUMNS if args.effective else STRUCTURE_COLUMNS)
    if not args.effective and args.simulations:
        columns.append(("p_value_sim", f"p (sim, B={args.simulations})", fmt_p))
    title = textwrap.fill(_EFFECTIVE_TITLE if args.effective else _STRUCTURE_TITLE, width=110)
    if study is not None:
        chains = study.by_file()
        for r in rows:
            c = chains[r["file"]]
            r.update(chain=c.name, method=c.method, seed=c.seed)
        identity = [("chain", "chain", fmt_str), ("method", "method", fmt_str), ("seed", "seed", fmt_str)]
        if args.json or args.csv:  # the records of the chain files, then the chains' identities
            columns = [("file", "file", fmt_str)] + columns + identity
        else:
            columns.insert(0, identity[0])
            title = f"study {study.summary()}\n{title}"
    elif len(args.files) > 1:
        columns.insert(0, ("file", "file", fmt_str))
    emit(args, rows, columns, title=title)
    return 0
