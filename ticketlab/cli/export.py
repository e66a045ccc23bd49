"""``ticketlab export FILE --level N --format FORMAT --out model.pt``: hand a ticket to PyTorch.

The work is done by :func:`ticketlab.io.export`; the formats and weight choices are the entries of the registries
:data:`ticketlab.io.FORMATS` and :data:`ticketlab.io.WEIGHT_CHOICES`, and the help text is written from them.
"""

from __future__ import annotations

import argparse

from ticketlab.cli import example_epilog

DEFAULT_FORMAT = "state-dict"
DEFAULT_WEIGHTS = "auto"


def register(sub: argparse._SubParsersAction) -> None:
    from ticketlab.io.export import FORMATS, WEIGHT_CHOICES

    formats = "; ".join(f"--format {name}{' (the default)' if name == DEFAULT_FORMAT else ''} {fmt.description}"
                        for name, fmt in FORMATS.items())
    weights = ", ".join(f"{name} ({w.description}{'; the default' if name == DEFAULT_WEIGHTS else ''})"
                        for name, w in WEIGHT_CHOICES.items())
    p = sub.add_parser(
        "export",
        help=f"write one level of a ticket for PyTorch ({FORMATS.choices(' or ')})",
        description="Write one level (or one of its branches) of a ticket file for use in PyTorch. "
        f"{formats}. A torch-prune file loads with strict=True after "
        "prune.identity(module, 'weight') on each masked tensor, or use ticketlab.io.apply_ticket(model, FILE, "
        f"level) in Python. --weights picks the weights: {weights}. "
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
    p.add_argument("--format", choices=FORMATS.names(), default=DEFAULT_FORMAT,
                   help=f"{FORMATS.choices(' or ')} (default: {DEFAULT_FORMAT})")
    p.add_argument("--weights", choices=WEIGHT_CHOICES.names(), default=DEFAULT_WEIGHTS,
                   help=f"which weights: {WEIGHT_CHOICES.choices()} (default: {DEFAULT_WEIGHTS})")
    p.add_argument("--out", required=True, metavar="FILE.pt", help="the file to write (.pt/.pth, or .safetensors; "
                   "missing directories are created)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=run)


#: What --out may end in: torch.save files, or safetensors.
SUFFIXES = (".pt", ".pth", ".safetensors")


def run(args: argparse.Namespace) -> int:
    from ticketlab.io.export import export
    from ticketlab.outputs import prepare_output

    with prepare_output(args.out, inputs=[args.file], overwrite=args.overwrite, suffixes=SUFFIXES) as out:
        note = export(args.file, out, args.level, format=args.format, weights=args.weights, branch=args.branch,
                      overwrite=args.overwrite)
    print(f"wrote {args.out} ({args.format}) from {args.file}")
    print(f"note: weights = {note}")
    return 0
