"""``ticketlab report FILE... --out report.html``: one self-contained HTML page about a set of ticket files.

A thin layer over :func:`ticketlab.report.build_report`; what the page holds is described in
:mod:`ticketlab.report.build`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ticketlab.cli import example_epilog
from ticketlab.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write one self-contained HTML report (figures inline) about ticket files",
        description="Write one HTML page about the ticket files: run summaries, accuracy against density, "
        "layer-wise density, mask overlap (two or more files of a model, or levels of one), structure (conv or "
        "feed-forward models) and fairness (when level 0 is evaluated). Each section appears only when it "
        "applies; the page says which were left out and why. Figures are embedded as PNG images and nothing "
        "is loaded from the network, so the file can be shared as it is.",
        epilog=example_epilog(
            "ticketlab report data/examples/*.h5 --out report.html",
            "ticketlab report runs/rewind_s*.h5 runs/finetune_s*.h5 --level 8 --out lenet.html",
        ),
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="ticket files (any mix of models, methods and seeds)")
    p.add_argument("--out", required=True, metavar="REPORT.html", help="the HTML file to write")
    p.add_argument("--level", type=int, help="the level compared by the overlap matrix, structure and fairness "
                   "sections (default: the last level common to the files of a model or method)")
    p.add_argument("--title", default="ticketlab report", help="the page's title (default: 'ticketlab report')")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ticketlab._version import __version__
    from ticketlab.report import write_report

    out = Path(args.out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"--out must name an .html file; got {args.out!r}")
    if out.is_dir():
        raise ConfigError(f"--out {args.out!r} is a directory; name the .html file to write")
    path = write_report(args.files, out, level=args.level, title=args.title,
                        generator=f"ticketlab {__version__}")
    print(f"ticketlab report: wrote {path} ({path.stat().st_size / 1e6:.1f} MB)", file=sys.stderr)
    return 0
