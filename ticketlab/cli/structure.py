"""``ticketlab structure FILE``: structured-like connectivity of a level's masks, and effective sparsity.

A thin layer over :mod:`ticketlab.analysis.structure`: choose levels, read masks and the tensor table, call
:func:`~ticketlab.analysis.structure.group_structure` (default) or
:func:`~ticketlab.analysis.structure.effective_density` (``--effective``) and print one table (or JSON/CSV
with the same columns).
"""

from __future__ import annotations

import argparse
import math
import textwrap
from typing import Any

import pandas as pd

from ticketlab.analysis.structure import effective_density, group_structure
from ticketlab.cli import example_epilog
from ticketlab.cli._select import (
    add_output_arguments, add_selection_arguments, emit, fmt_float, fmt_int, fmt_str, parse_spec, select,
)
from ticketlab.cli._output import fmt_ratio
from ticketlab.errors import ConfigError


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
        "unless --level N or FILE:N says otherwise.",
        epilog=example_epilog(
            "ticketlab structure runs/conv2.h5",
            "ticketlab structure runs/conv2.h5:5 --simulations 999",
            "ticketlab structure runs/lenet300.h5 --effective --all-levels",
            "ticketlab structure runs/lenet300.h5 --effective --csv > effective.csv",
        ),
    )
    add_selection_arguments(p)
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


def _records(df: pd.DataFrame, **extra: Any) -> list[dict[str, Any]]:
    """DataFrame rows as plain dicts, with every missing value (NA, NaN) as None (``-`` in tables, null in JSON)."""
    return [{**extra, **{k: (None if _missing(v) else v) for k, v in r.items()}} for r in df.to_dict("records")]


def collect(specs: list[str], *, level: int | None = None, all_levels: bool = False, effective: bool = False,
            simulations: int = 0, seed: int | None = 0) -> list[dict[str, Any]]:
    """The rows ``structure`` prints, as plain records (each with ``file`` and ``level``)."""
    if simulations < 0:
        raise ConfigError(f"--simulations must be >= 0; got {simulations}")
    if all_levels:
        if level is not None:
            raise ConfigError("--all-levels and --level cannot be combined; choose one")
        typed = [s for s in specs if parse_spec(s)[1] is not None]
        if typed:
            raise ConfigError(f"--all-levels uses every level, but {typed[0]!r} names one; drop ':LEVEL' or "
                              "--all-levels")
    rows: list[dict[str, Any]] = []
    for s in select(specs, level):
        with s.ticket as t:
            tensors = t.tensors
            for lv in (t.levels if all_levels else [s.level]):
                masks = t.masks(lv)
                if effective:
                    df = effective_density(masks, tensors)
                else:
                    df = group_structure(masks, tensors, simulations=simulations, seed=seed)
                rows += _records(df, file=str(s.path), level=lv)
    return rows


def run(args: argparse.Namespace) -> int:
    rows = collect(args.files, level=args.level, all_levels=args.all_levels, effective=args.effective,
                   simulations=args.simulations, seed=args.seed)
    columns = list(EFFECTIVE_COLUMNS if args.effective else STRUCTURE_COLUMNS)
    if not args.effective and args.simulations:
        columns.append(("p_value_sim", f"p (sim, B={args.simulations})", fmt_p))
    if len(args.files) > 1:
        columns.insert(0, ("file", "file", fmt_str))
    title = textwrap.fill(_EFFECTIVE_TITLE if args.effective else _STRUCTURE_TITLE, width=110)
    emit(args, rows, columns, title=title)
    return 0
