"""``ticketlab import KIND SRC --out FILE.h5``: make ticket files from sources made elsewhere.

The kinds are the entries of :data:`ticketlab.io.IMPORT_KINDS`, each carrying its importer; this module adds
each kind's arguments (named after its importer's keyword arguments), calls the entry and formats the result."""

from __future__ import annotations

import argparse
from collections import Counter
from typing import Any, Callable

from ticketlab.cli import example_epilog
from ticketlab.cli._output import fmt_float, fmt_int, fmt_str, table, to_json

LEVEL_COLUMNS = [
    ("level", "level", fmt_str),
    ("branch", "branch", fmt_str),
    ("kept", "kept", fmt_int),
    ("size", "size", fmt_int),
    ("density", "density", fmt_float(4)),
]
TENSOR_COLUMNS = [
    ("level", "level", fmt_str),
    ("layer", "layer", fmt_str),
    ("shape", "shape", fmt_str),
    ("dtype", "dtype", fmt_str),
    ("zeros", "exact zeros", fmt_int),
    ("zero_fraction", "zero fraction", fmt_float(4)),
    ("pattern_text", "N:M", fmt_str),
    ("pruned_text", "pruned", fmt_str),
    ("density", "density", fmt_float(4)),
]


def register(sub: argparse._SubParsersAction) -> None:
    from ticketlab.io import IMPORT_KINDS

    entries = [kind for _, kind in IMPORT_KINDS.items()]
    reads = ", ".join(k.reads for k in entries[:-1]) + (" or " if len(entries) > 1 else "") + entries[-1].reads
    p = sub.add_parser(
        "import",
        help=f"make ticket files from {reads}",
        description="Import masks made elsewhere into ticket files, so that every analysis works on them. .pth/.pt "
        "files are loaded only with torch.load(weights_only=True): files that need other pickled objects (a whole "
        "model saved with torch.save(model), OpenLTH's checkpoint.pth) are refused or skipped, never unpickled. "
        "Output files appear only when the import succeeded.",
        epilog=example_epilog(
            "ticketlab import openlth ~/open_lth_data/lottery_1db02943c54add91e13635735031a85e --out lenet.h5",
            "ticketlab import torch-prune level1.pt level2.pt level3.pt --out pruned.h5 --start-level 1",
            "ticketlab import checkpoint wanda-2of4/ --out wanda.h5 --layers",
            "ticketlab overlap wanda.h5 sparsegpt.h5",
        ),
    )
    kinds = p.add_subparsers(dest="kind", metavar="KIND", required=True, parser_class=type(p))
    for kind in entries:
        k = kinds.add_parser(kind.name, help=kind.summary)
        _ARGUMENTS.get(kind.name, _generic)(k)
        _common(k)
    p.set_defaults(func=run)


# Each kind's own arguments, description and examples. Options are named (dest) after the importer's keyword
# arguments, so that run() passes them on without a table.
_ARGUMENTS: dict[str, Callable[[argparse.ArgumentParser], None]] = {}


def _arguments(kind: str) -> Callable:
    def decorator(fn: Callable[[argparse.ArgumentParser], None]) -> Callable[[argparse.ArgumentParser], None]:
        _ARGUMENTS[kind] = fn
        return fn

    return decorator


def _generic(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", nargs="+", metavar="SRC", help="the files or directories to import")


@_arguments("openlth")
def _openlth(o: argparse.ArgumentParser) -> None:
    o.description = (
        "Import OpenLTH lottery runs: one ticket file per replicate, with every level's mask, the "
        "initial (and rewind) weights, each level's trained weights, its logged test metrics and the "
        "hyperparameters of hparams.log; branches (lottery_branch_<name>_<hash>) become branches of their level "
        "(randomly_prune -> kind random, randomly_reinitialize -> reinit, retrain). Tensors OpenLTH did not prune "
        "keep all-ones masks and are marked unpruned. With several replicates, FILE.h5 becomes "
        "FILE_replicate<r>.h5 (FILE_<hash8>_replicate<r>.h5 for several experiments).")
    o.epilog = example_epilog(
        "ticketlab import openlth ~/open_lth_data --out runs/openlth.h5",
        "ticketlab import openlth ~/open_lth_data/lottery_1db0.../replicate_2 --out lenet_r2.h5",
    )
    o.add_argument("src", metavar="SRC", help="OpenLTH results root, a lottery_<hash> or a replicate_<r> directory")
    o.add_argument("--replicate", type=int, metavar="R", help="import only replicate R")
    o.add_argument("--no-weights", dest="weights", action="store_false", help="store masks, init/rewind weights "
                   "and metrics only (not the trained weights of every level)")


@_arguments("torch-prune")
def _torch_prune(t: argparse.ArgumentParser) -> None:
    t.description = (
        "Import state dicts saved with torch.save(model.state_dict()) from models pruned with "
        "torch.nn.utils.prune (<name>_orig and <name>_mask) or masked with torch.nn.utils.parametrize; the "
        "module. (DDP) and _orig_mod. (torch.compile) prefixes are removed. Several files become consecutive "
        "levels in the order given. Whole pickled models (torch.save(model)) are refused: save "
        "model.state_dict() instead.")
    t.epilog = example_epilog(
        "ticketlab import torch-prune dense.pt pruned_20.pt pruned_36.pt --out pruned.h5",
        "ticketlab import torch-prune ddp_level3.pt --init init.pt --start-level 3 --out level3.h5",
    )
    t.add_argument("src", nargs="+", metavar="SRC", help="state-dict files, one per level, in level order")
    t.add_argument("--init", metavar="FILE", help="a state dict of the initial weights, stored as the run's init")
    t.add_argument("--no-weights", dest="weights", action="store_false",
                   help="store the masks only, not each level's weights")
    t.add_argument("--model", metavar="NAME", help="model name to record (default: unknown)")
    t.add_argument("--start-level", type=int, default=0, metavar="L", help="level number of the first file "
                   "(default 0)")


@_arguments("checkpoint")
def _checkpoint(c: argparse.ArgumentParser) -> None:
    from ticketlab.io import DEFAULT_ZERO_THRESHOLD

    c.description = (
        "Import dense checkpoints in which pruned weights are exact zeros: a PyTorch state dict, a "
        ".safetensors file, or a Hugging Face directory (sharded with model.safetensors.index.json). Tensors are "
        "read one at a time in blocks, so checkpoints far larger than memory import in constant memory. Every "
        "floating-point tensor with >= 2 dimensions gets a mask. A tensor counts as pruned when its fraction of "
        f"exact zeros exceeds --zero-threshold (default {DEFAULT_ZERO_THRESHOLD}) or it has an N:M pattern (at "
        "most N nonzeros in every group of M consecutive weights, M = 4 or 8, searched along the last dimension, "
        "conv input channels and dim 0 of 2-D weights; reported when >= 90% of groups keep exactly N); its mask is "
        "then weight != 0. Other tensors are dense: all-ones masks, their chance zeros reported. Several "
        "checkpoints become consecutive levels.")
    c.epilog = example_epilog(
        "ticketlab import checkpoint model.safetensors --out model.h5 --layers",
        "ticketlab import checkpoint llama-7b-wanda/ --out wanda.h5          # sharded HF directory",
        "ticketlab import checkpoint magnitude_50.pt --out m50.h5 --zero-threshold 0",
    )
    c.add_argument("src", nargs="+", metavar="SRC", help="checkpoint files or directories, one per level")
    c.add_argument("--zero-threshold", type=float, default=DEFAULT_ZERO_THRESHOLD, metavar="FRACTION",
                   help="zero fraction above which a tensor without an N:M pattern counts as pruned (default "
                   f"{DEFAULT_ZERO_THRESHOLD})")
    c.add_argument("--weights", action="store_true", help="also store the weights (kept values; about 4 bytes per "
                   "weight of the largest tensor in memory)")
    c.add_argument("--init", metavar="SRC", help="a checkpoint of the initial weights, stored as the run's init")
    c.add_argument("--model", metavar="NAME", help="model name to record (default: from config.json or the file name)")
    c.add_argument("--start-level", type=int, default=0, metavar="L", help="level number of the first checkpoint "
                   "(default 0)")
    c.add_argument("--layers", action="store_true", help="show every tensor: exact zeros, N:M pattern, pruned")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, metavar="FILE.h5", help="the ticket file to write (.h5; missing "
                   "directories are created)")
    p.add_argument("--overwrite", action="store_true", help="replace the output if it exists")
    p.add_argument("--json", action="store_true", help="print what was written as JSON")


def run(args: argparse.Namespace) -> int:
    from ticketlab.io import IMPORT_KINDS
    from ticketlab.outputs import TICKET_SUFFIXES, prepare_output

    kind = IMPORT_KINDS.get(args.kind)
    sources = [args.src] if isinstance(args.src, str) else list(args.src)
    # checked and locked before anything is read; whether an output exists is the importer's to check (OpenLTH
    # imports of several replicates write FILE_replicate<r>.h5 instead of FILE.h5)
    with prepare_output(args.out, inputs=[*sources, getattr(args, "init", None)], overwrite=True,
                        suffixes=TICKET_SUFFIXES):
        results = kind.run(args.src, args.out, **{k: getattr(args, k) for k in kind.options() if hasattr(args, k)})
    if args.json:
        print(to_json([{"file": str(r.path), "source": r.source, "kind": r.kind, "levels": r.levels,
                        "tensors": r.tensors, "notes": r.notes} for r in results]))
        return 0
    for i, r in enumerate(results):
        if i:
            print()
        print(render(r, layers=getattr(args, "layers", False)))
    return 0


def render(r: Any, layers: bool = False) -> str:
    """The text report of one import: levels written, per-tensor findings (checkpoints), notes."""
    n_levels = len({rec["level"] for rec in r.levels})
    n_branches = sum(1 for rec in r.levels if rec["branch"])
    head = f"wrote {r.path} ({r.kind} import of {r.source}): {n_levels} level(s)"
    if n_branches:
        head += f", {n_branches} branch(es)"
    cols = LEVEL_COLUMNS if n_branches else [c for c in LEVEL_COLUMNS if c[0] != "branch"]
    lines = [head, "density = kept fraction of the masked weights", table(r.levels, cols)]
    if r.tensors:
        last = max(rec["level"] for rec in r.tensors)
        final = [rec for rec in r.tensors if rec["level"] == last]
        pruned = [rec for rec in final if rec["pruned"]]
        patterns = Counter(f"{rec['pattern']} along dim {rec['pattern_dim']}" for rec in pruned if rec["pattern"])
        text = ", ".join(f"{k}: {v}" for k, v in patterns.items()) or "none"
        lines.append(f"level {last}: {len(pruned)} of {len(final)} tensors pruned; N:M patterns: {text}")
        if layers:
            rows = [{**rec, "pattern_text": (f"{rec['pattern']} (dim {rec['pattern_dim']})" if rec["pattern"] else "-"),
                     "pruned_text": "yes" if rec["pruned"] else "no",
                     "density": rec["kept"] / rec["size"] if rec["size"] else None} for rec in r.tensors]
            lines += ["", table(rows, TENSOR_COLUMNS)]
    lines += [f"note: {n}" for n in r.notes]
    return "\n".join(lines)
