"""``ticketlab export FILE --level N --format torch-prune|state-dict --out model.pt``: hand a ticket to PyTorch.

The work is done by :func:`ticketlab.io.export`; formats and weight choices are described there.
"""

from __future__ import annotations

import argparse

from ticketlab.cli import example_epilog

FORMATS = ("torch-prune", "state-dict")  # as ticketlab.io.export.FORMATS
WEIGHT_CHOICES = ("auto", "trained", "init", "rewind")  # as ticketlab.io.export.WEIGHT_CHOICES


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="write one level of a ticket as a torch.nn.utils.prune state dict or a masked state dict",
        description="Write one level (or one of its branches) of a ticket file for use in PyTorch. --format "
        "torch-prune writes <name>_orig (the weights) and <name>_mask (the mask) for every masked tensor, as a model "
        "pruned with torch.nn.utils.prune has them: load it with strict=True after prune.identity(module, 'weight') "
        "on each masked tensor, or use ticketlab.io.apply_ticket(model, FILE, level) in Python. --format state-dict "
        "writes the plain state dict with the mask applied (pruned weights are exact zeros). --weights picks the "
        "weights: trained (the level's trained weights), init (the initial weights, a branch's own when it has "
        "them), rewind (the rewind point of a rewind:K run) or auto (trained if stored, else init; the default). "
        "A note says which were used. An --out ending in .safetensors writes safetensors instead of torch.save. "
        "Importing the output back (ticketlab import torch-prune / checkpoint) gives the same masks.",
        epilog=example_epilog(
            "ticketlab export run.h5 --level 5 --format torch-prune --out ticket5.pt",
            "ticketlab export run.h5 --level 5 --format state-dict --weights init --out winning_ticket_init.pt",
            "ticketlab export run.h5 --level 2 --branch reinit --format state-dict --out reinit2.safetensors",
        ),
    )
    p.add_argument("file", metavar="FILE", help="a ticket file (.h5)")
    p.add_argument("--level", type=int, help="the level to export (default: the last; -1 = last, -2 = the one before)")
    p.add_argument("--branch", metavar="NAME", help="export this control branch of the level")
    p.add_argument("--format", choices=FORMATS, default="state-dict", help="torch-prune or state-dict (default)")
    p.add_argument("--weights", choices=WEIGHT_CHOICES, default="auto",
                   help="which weights: auto (default), trained, init or rewind")
    p.add_argument("--out", required=True, metavar="FILE.pt", help="the file to write (.pt/.pth, or .safetensors)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ticketlab.io.export import export

    note = export(args.file, args.out, args.level, format=args.format, weights=args.weights, branch=args.branch,
                  overwrite=args.overwrite)
    print(f"wrote {args.out} ({args.format}) from {args.file}")
    print(f"note: weights = {note}")
    return 0
