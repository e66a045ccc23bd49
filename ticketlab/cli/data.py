"""``ticketlab data``: list the registered datasets and download their raw files."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ticketlab.cli import EXIT_USAGE, example_epilog
from ticketlab.cli._output import fmt_int, fmt_str, table, to_json

LIST_COLUMNS = [
    ("name", "dataset", fmt_str),
    ("input_shape", "input (C,H,W)", lambda v: "x".join(map(str, v))),
    ("num_classes", "classes", fmt_int),
    ("train_size", "train images", fmt_int),
    ("test_size", "test images", fmt_int),
    ("files", "files", fmt_str),
    ("dataset_dir", "location", fmt_str),
]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``data`` (with actions ``list`` and ``download``) to the ``ticketlab`` sub-command parsers."""
    from ticketlab.datasets import DATA_ENV_VAR, DATASETS

    default_dir = f"${DATA_ENV_VAR}, else the repository's data/, else ./data"
    parser = subparsers.add_parser(
        "data",
        help="list datasets and download their files",
        description="List the registered datasets and whether their files are present, or download a dataset's "
        f"files (checked against the published md5) into DIR/NAME/. Without --data-dir, the data directory is "
        f"{default_dir}. Datasets: {DATASETS.choices()}.",
        epilog=example_epilog(
            "ticketlab data list",
            "ticketlab data download cifar10",
            "ticketlab data download fashion_mnist --data-dir ~/datasets",
            "ticketlab data download mnist --base-url https://ossci-datasets.s3.amazonaws.com/mnist",
        ),
    )
    actions = parser.add_subparsers(dest="data_action", metavar="ACTION")

    p_list = actions.add_parser(
        "list",
        help="show the datasets, their shapes and whether their files are present",
        description="Show each registered dataset: input shape (channels, height, width in pixels), number of "
        "classes, official split sizes (images), and whether its files are present in the data directory.",
        epilog=example_epilog("ticketlab data list", "ticketlab data list --data-dir ~/datasets --json"),
    )
    p_list.add_argument("--data-dir", metavar="DIR", help="data directory to look in (default: searched)")
    p_list.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p_list.set_defaults(func=run_list)

    p_dl = actions.add_parser(
        "download",
        help="download a dataset's files and check their md5",
        description="Download NAME's files into DIR/NAME/: each goes to a temporary name first, its md5 is "
        "checked against the published one, and only then is it renamed into place. Files already present "
        "with the right md5 are skipped.",
        epilog=example_epilog(
            "ticketlab data download cifar10",
            "ticketlab data download kmnist --data-dir ~/datasets",
            "ticketlab data download mnist --base-url http://127.0.0.1:8000/mnist",
        ),
    )
    p_dl.add_argument("name", metavar="NAME", help=f"dataset name: {DATASETS.choices()}")
    p_dl.add_argument("--data-dir", metavar="DIR", help=f"data directory (default: {default_dir})")
    p_dl.add_argument("--base-url", metavar="URL", help="fetch URL/FILE instead of the official location (a mirror)")
    p_dl.add_argument("--quiet", "-q", action="store_true", help="print only errors and the result")
    p_dl.set_defaults(func=run_download)

    def no_action(args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return EXIT_USAGE

    parser.set_defaults(func=no_action)


def collect(data_dir: str | None = None) -> list[dict[str, Any]]:
    """One record per registered dataset: what ``data list`` shows (the ``--json`` output)."""
    from ticketlab.datasets import dataset_statuses, get_dataset_spec

    records = []
    for status in dataset_statuses(data_dir):
        spec = get_dataset_spec(status.name)
        if status.present:
            files = {"archive": "present (archive)", "folder": "present (extracted)"}.get(status.source, "present")
        elif status.dataset_dir.is_dir():
            files = f"incomplete: missing {', '.join(status.missing)}"
        else:
            files = "missing"
        records.append(
            {
                "name": spec.name,
                "input_shape": list(spec.input_shape),
                "num_classes": spec.num_classes,
                "train_size": spec.train_size,
                "test_size": spec.test_size,
                "present": status.present,
                "files": files,
                "missing": list(status.missing),
                "dataset_dir": str(status.dataset_dir),
            }
        )
    return records


def run_list(args: argparse.Namespace) -> int:
    records = collect(args.data_dir)
    if args.json:
        print(to_json(records))
        return 0
    print(table(records, LIST_COLUMNS))
    if not all(r["present"] for r in records):
        print("\nget a missing dataset with: ticketlab data download NAME [--data-dir DIR]")
    return 0


def run_download(args: argparse.Namespace) -> int:
    from ticketlab.datasets import download

    paths = download(args.name, args.data_dir, base_url=args.base_url, progress=not args.quiet)
    folder = paths[0].parent  # <data_dir>/<registered name>/
    print(f"{folder.name}: {len(paths)} file(s) with verified md5 in {folder}")
    return 0
