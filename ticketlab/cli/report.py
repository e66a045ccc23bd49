"""``ticketlab report FILE... --out report.html``: one self-contained HTML page about a set of ticket files;
``ticketlab report DIR --out study.html``: the page of a study directory (``ticketlab study run``).

A thin layer over :func:`ticketlab.report.build_report` and :func:`ticketlab.report.build_study_report`; what the
pages hold is described in :mod:`ticketlab.report.build` and :mod:`ticketlab.report.study`.
"""

from __future__ import annotations

import argparse
import sys

from ticketlab.cli import example_epilog


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write one self-contained HTML report (figures inline) about ticket files",
        description="Write one HTML page about the ticket files: run summaries, accuracy against density, "
        "layer-wise density, mask overlap (two or more files of a model, or levels of one), structure (conv or "
        "feed-forward models) and fairness (when level 0 is evaluated). Each section appears only when it "
        "applies; the page says which were left out and why. Figures are embedded as PNG images and nothing "
        "is loaded from the network, so the file can be shared as it is. Given a study directory (DIR holding "
        "manifest.json, from 'ticketlab study run'), the page shows the figures of the study: accuracy and "
        "early-stopping iteration against density, one line per method with a band over its seeds; the method x "
        "method mask overlap at a matched level beside chance; per-class drops and Hooker et al.'s test with each "
        "method's seeds as the population; structure and effective sparsity against density per method.",
        epilog=example_epilog(
            "ticketlab report data/examples/*.h5 --out report.html",
            "ticketlab report runs/rewind_s*.h5 runs/finetune_s*.h5 --level 8 --out lenet.html",
            "ticketlab report runs/rewinding --out rewinding.html      # a study directory",
        ),
    )
    p.add_argument("files", nargs="+", metavar="FILE",
                   help="ticket files (any mix of models, methods and seeds), or one study directory")
    p.add_argument("--out", required=True, metavar="REPORT.html", help="the HTML file to write (.html; missing "
                   "directories are created)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--level", type=int, help="the level compared by the overlap matrix, structure and fairness "
                   "sections (default: the last level common to the files of a model or method)")
    p.add_argument("--title", help="the page's title (default: 'ticketlab report', or 'Study NAME' for a study)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ticketlab._version import __version__
    from ticketlab.outputs import HTML_SUFFIXES, prepare_output
    from ticketlab.frames import study_argument
    from ticketlab.report import write_report, write_study_report

    generator = f"ticketlab {__version__}"
    study = study_argument(args.files, args.level)
    with prepare_output(args.out, inputs=args.files, overwrite=args.overwrite, suffixes=HTML_SUFFIXES) as out:
        if study is not None:
            path = write_study_report(study[0], out, level=study[1], title=args.title,
                                      generator=generator)
        else:
            path = write_report(args.files, out, level=args.level, title=args.title or "ticketlab report",
                                generator=generator)
    print(f"ticketlab report: wrote {path} ({path.stat().st_size / 1e6:.1f} MB)", file=sys.stderr)
    return 0
