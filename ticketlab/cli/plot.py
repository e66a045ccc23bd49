"""``ticketlab plot KIND FILE[:LEVEL]... --out fig.png``: draw one figure of ticket files (PNG, PDF or SVG).

A thin layer over :func:`ticketlab.frames.plot_files`, which loads a kind's tidy input with :mod:`ticketlab.frames`
and draws it: the kinds are the registry :data:`ticketlab.plots.PLOTS`, and the same figures are drawn in Python
by the functions of :mod:`ticketlab.plots`.
"""

from __future__ import annotations

import argparse
import sys
import textwrap

from ticketlab.cli import example_epilog
from ticketlab.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    from ticketlab.plots import FORMATS, PLOTS
    from ticketlab.plots.accuracy import BANDS

    width = max(len(k) for k in PLOTS.names())
    kinds = "\n".join(textwrap.fill(v.description, 100, initial_indent=f"  {k.ljust(width)}  ",
                                    subsequent_indent=" " * (width + 4)) for k, v in PLOTS.items())
    p = sub.add_parser(
        "plot",
        help="draw a figure of ticket files: accuracy vs density, layer densities, overlap, structure, fairness",
        description="Draw one figure of ticket files and save it as PNG, PDF or SVG (chosen by --out's suffix). "
        "Density is the kept fraction of the masked weights, accuracy a fraction; runs are named by method and "
        "seed, control branches as 'method / reinit' etc. Colours are colour-blind safe.\n\n"
        f"KIND is one of:\n\n{kinds}",
        epilog=example_epilog(
            "ticketlab plot accuracy runs/*.h5 --out accuracy.pdf",
            "ticketlab plot accuracy runs/rewind_s*.h5 --per-run --out accuracy_runs.png",
            "ticketlab plot layer-heatmap runs/rewind_s0.h5 --out layers.svg",
            "ticketlab plot overlap runs/rewind_s0.h5:8 runs/rewind_s1.h5:8 runs/finetune_s0.h5:8 --out jaccard.png",
            "ticketlab plot kernels runs/lenet5.h5 --layer convs.1.weight --out kernels.png",
            "ticketlab plot pies runs/rewind_s0.h5 runs/rewind_s1.h5 --level 8 --out pies.png",
        ),
    )
    p.add_argument("kind", metavar="KIND", help="what to draw: " + PLOTS.choices())
    p.add_argument("files", nargs="+", metavar="FILE[:LEVEL]",
                   help="ticket files; ':LEVEL' picks a level for the kinds that show one")
    p.add_argument("--out", required=True, metavar="FIG.png|pdf|svg",
                   help=f"the figure file; its suffix chooses the format ({', '.join(FORMATS)}); missing "
                   "directories are created")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--level", type=int, help="the level of kinds that show one (default: the last, or the last "
                   "common to all files)")
    p.add_argument("--layer", help="kernels: the layer (default: the conv layer with the most kernels); overlap: "
                   "one layer instead of all layers pooled")
    p.add_argument("--per-run", action="store_true",
                   help="accuracy, early-stop: one line per run instead of the mean with a band over seeds")
    p.add_argument("--band", choices=BANDS.names(), default="range",
                   help="accuracy, early-stop: the band over seeds: "
                   + ", ".join(f"{name} ({b.help})" for name, b in BANDS.items()) + "; default: range")
    p.add_argument("--title", help="replace the figure's title")
    p.add_argument("--dpi", type=int, default=200, help="resolution of PNG output (default 200)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ticketlab.frames import plot_files
    from ticketlab.outputs import prepare_output
    from ticketlab.plots import figure_format, get_plot, save_figure

    get_plot(args.kind)  # an unknown kind or a bad --out fails before any file is read
    if args.dpi <= 0:
        raise ConfigError(f"--dpi must be a positive integer; got {args.dpi}")
    with prepare_output(args.out, inputs=args.files, overwrite=args.overwrite) as out:
        figure_format(out)  # the suffix chooses the format; anything else is refused before drawing
        fig = plot_files(args.kind, args.files, level=args.level, layer=args.layer, per_run=args.per_run,
                         band=args.band, title=args.title)
        path = save_figure(fig, out, dpi=args.dpi)
    print(f"ticketlab plot: wrote {path}", file=sys.stderr)
    return 0
