"""``ticketlab info FILE``: what a ticket file holds — run, levels, and (with --layers) per-layer densities."""

from __future__ import annotations

import argparse
from typing import Any

from ticketlab.cli import example_epilog
from ticketlab.cli._output import fmt_float, fmt_int, fmt_ratio, fmt_str, table, to_json
from ticketlab.store import CHECKSUMS_SINCE, TicketFile

LEVEL_COLUMNS = [
    ("level", "level", fmt_str),
    ("branch", "branch", fmt_str),
    ("density", "density", fmt_float(4)),
    ("sparsity", "sparsity", fmt_float(4)),
    ("compression", "compression", fmt_ratio),
    ("kept", "kept", fmt_int),
    ("accuracy", "accuracy", fmt_float(4)),
    ("loss", "loss", fmt_float(4)),
    ("early_stop_iteration", "early-stop it", fmt_int),
]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info",
        help="summarise a ticket file: model, dataset, method, seed and its levels",
        description="Print a ticket file's model, dataset, method and seed, and a table of its levels with "
        "density (kept fraction of the masked weights), sparsity (1 - density), compression (total/kept), "
        "test accuracy (fraction correct) and the early-stopping iteration (minimum validation loss). Every "
        "number is checked against the data it summarises (kept counts against the mask bits, accuracy against "
        "the predictions) and the file's data checksums are verified; 'checksums:' says whether the file has "
        "them (files written before ticketlab " + CHECKSUMS_SINCE + " have none).",
        epilog=example_epilog(
            "ticketlab info runs/quickstart_seed0.h5",
            "ticketlab info runs/quickstart_seed0.h5 --layers",
            "ticketlab info runs/quickstart_seed0.h5 --json > summary.json",
        ),
    )
    p.add_argument("file", metavar="FILE", help="a ticket file (.h5)")
    p.add_argument("--layers", action="store_true", help="also show each masked tensor's density per level")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--no-branches", action="store_true", help="leave control branches out of the level table")
    p.set_defaults(func=run)


def collect(path: str, layers: bool = False, branches: bool = True) -> dict[str, Any]:
    """Everything ``info`` shows, as plain data (the ``--json`` output)."""
    with TicketFile(path) as t:
        prov = t.provenance
        ds = t.dataset
        tensors = t.tensors
        out: dict[str, Any] = {
            "file": str(path),
            "schema_version": t.schema_version,
            "status": t.status,
            "model": t.model,
            "dataset": None if ds is None else ds.name,
            "num_classes": None if ds is None else ds.num_classes,
            "test_examples": None if ds is None or ds.test_labels is None else int(ds.test_labels.size),
            "method": t.method,
            "seed": t.seed,
            "created": prov.get("created"),
            "updated": prov.get("updated"),
            "versions": {k: v for k, v in prov.items() if k.endswith("_version") and k != "schema_version"},
            "tensors": [
                {"name": x.name, "kind": x.kind, "shape": list(x.shape), "size": x.size, "pruned": x.pruned}
                for x in tensors
            ],
            "checkpoints": t.checkpoints(),
            "levels": [{**r, "branch": r["branch"] if isinstance(r["branch"], str) else None}
                       for r in t.summary(branches=branches).to_dict("records")],
        }
        if layers:
            out["layers"] = t.layer_summary().to_dict("records")
    return out


def run(args: argparse.Namespace) -> int:
    info = collect(args.file, layers=args.layers, branches=not args.no_branches)
    if args.json:
        print(to_json(info))
        return 0
    with TicketFile(args.file) as t:
        checksums = t.checksums()
    print(render(info, checksums))
    return 0


def render(info: dict[str, Any], checksums: dict[str, Any] | None = None) -> str:
    """The text ``info`` prints; ``checksums`` as :meth:`TicketFile.checksums` gives it (a line when given)."""
    size = sum(t["size"] for t in info["tensors"])
    pruned = sum(1 for t in info["tensors"] if t["pruned"])
    v = info["versions"]
    ds = "-" if info["dataset"] is None else f"{info['dataset']} ({info['num_classes']} classes"
    if info["dataset"] is not None:
        ds += f", {info['test_examples']:,} test examples)" if info["test_examples"] else ")"
    lines = [
        f"{info['file']}: ticket file (schema {info['schema_version']}), status {info['status']}",
        f"  model    {info['model']}: {len(info['tensors'])} masked tensors ({pruned} pruned), {size:,} weights",
        f"  dataset  {ds}",
        f"  method   {info['method'] or '-'}",
        f"  seed     {'-' if info['seed'] is None else info['seed']}",
        f"  created  {info['created']} with ticketlab {v.get('ticketlab_version', '?')}, "
        f"torch {v.get('torch_version', '?')}, numpy {v.get('numpy_version', '?')}, h5py {v.get('h5py_version', '?')}",
        f"  weights  {', '.join(info['checkpoints']) or 'none'}",
        *([f"  checksums: {checksum_line(checksums)}"] if checksums is not None else []),
        "",
    ]
    levels = info["levels"]
    if not levels:
        lines.append("no levels yet")
    else:
        cols = LEVEL_COLUMNS if any(r["branch"] for r in levels) else [c for c in LEVEL_COLUMNS if c[0] != "branch"]
        lines.append(table(levels, cols))
    if "layers" in info:
        lines += ["", _layers_table(info)]
    return "\n".join(lines)


def checksum_line(c: dict[str, Any]) -> str:
    """Whether HDF5 verifies the file's data on read: all of it, none (an older file) or part of it."""
    if c["without"] == 0:
        return "fletcher32 on masks, weights and evaluations (HDF5 verifies them on every read)"
    if c["without"] == c["datasets"]:
        return f"none (written before ticketlab {CHECKSUMS_SINCE}); kept counts are still checked against the masks"
    return (f"partial: {c['without']} of {c['datasets']} datasets have none, e.g. {c['example']} (written before "
            f"ticketlab {CHECKSUMS_SINCE} or by another tool)")


def _layers_table(info: dict[str, Any]) -> str:
    """Rows: tensors; columns: shape, size, pruned, then the density at each level."""
    by_layer: dict[str, dict[str, Any]] = {}
    for t in info["tensors"]:
        by_layer[t["name"]] = {"layer": t["name"], "kind": t["kind"], "shape": "x".join(map(str, t["shape"])),
                               "size": t["size"], "pruned": "yes" if t["pruned"] else "no"}
    levels = sorted({r["level"] for r in info["layers"]})
    for r in info["layers"]:
        by_layer[r["layer"]][f"L{r['level']}"] = r["density"]
    cols = [("layer", "layer", fmt_str), ("kind", "kind", fmt_str), ("shape", "shape", fmt_str),
            ("size", "size", fmt_int), ("pruned", "pruned", fmt_str)]
    cols += [(f"L{level}", f"L{level}", fmt_float(4)) for level in levels]
    return "density (kept fraction) of each masked tensor per level\n" + table(list(by_layer.values()), cols)
