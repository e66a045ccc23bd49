"""``ticketlab data``: list the registered datasets and download their raw files."""

from __future__ import annotations

import argparse
import sys

from ticketlab.cli import EXIT_USAGE, example_epilog


def register(subparsers) -> None:
    """Add ``data`` (with actions ``list`` and ``download``) to the ``ticketlab`` sub-command parsers."""
    parser = subparsers.add_parser(
        "data",
        help="list datasets and download their files",
        description=(
            "List the registered datasets and whether their files are present, or download a dataset's "
            "files (checked against the published md5) into DATA_DIR/NAME/. Without --data-dir, the data "
            "directory is $TICKETLAB_DATA, else the repository's data/ folder, else ./data."
        ),
        epilog=example_epilog(
            "ticketlab data list",
            "ticketlab data download cifar10",
            "ticketlab data download fashion_mnist --data-dir ~/datasets",
            "ticketlab data download mnist --base-url https://ossci-datasets.s3.amazonaws.com/mnist",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="data_action", metavar="ACTION")

    p_list = actions.add_parser(
        "list",
        help="show the datasets, their shapes and whether their files are present",
        description="Show each registered dataset: input shape (C,H,W), classes, split sizes, and whether its "
        "files are present in the data directory.",
        epilog=example_epilog("ticketlab data list", "ticketlab data list --data-dir ~/datasets"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p_list.add_argument("--data-dir", metavar="DIR", help="data directory to look in (default: searched)")
    p_list.set_defaults(func=_cmd_list)

    p_dl = actions.add_parser(
        "download",
        help="download a dataset's files and check their md5",
        description="Download NAME's files into DIR/NAME/, each to a temporary name first, then check its md5 "
        "and rename it into place. Files already present with the right md5 are skipped.",
        epilog=example_epilog(
            "ticketlab data download cifar10",
            "ticketlab data download kmnist --data-dir ~/datasets",
            "ticketlab data download mnist --base-url http://127.0.0.1:8000/mnist",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p_dl.add_argument("name", metavar="NAME", help="dataset name (see 'ticketlab data list')")
    p_dl.add_argument("--data-dir", metavar="DIR", help="data directory (default: $TICKETLAB_DATA, the "
                      "repository's data/, else ./data)")  # fmt: skip
    p_dl.add_argument("--base-url", metavar="URL", help="fetch URL/FILE instead of the official location (a mirror)")
    p_dl.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors and the result")
    p_dl.set_defaults(func=_cmd_download)

    def _no_action(args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return EXIT_USAGE

    parser.set_defaults(func=_no_action)


def _cmd_list(args: argparse.Namespace) -> int:
    from ticketlab.datasets import dataset_status, get_dataset_spec, list_datasets

    header = ("dataset", "input (C,H,W)", "classes", "train", "test", "files", "location")
    rows = []
    all_present = True
    for name in list_datasets():
        spec = get_dataset_spec(name)
        status = dataset_status(name, args.data_dir)
        if status.present:
            files = {"archive": "present (archive)", "folder": "present (extracted)"}.get(status.source, "present")
        elif status.dataset_dir.is_dir():
            files = f"incomplete: missing {', '.join(status.missing)}"
        else:
            files = "missing"
        all_present = all_present and status.present
        shape = "x".join(str(d) for d in spec.input_shape)
        rows.append((name, shape, str(spec.num_classes), str(spec.train_size), str(spec.test_size), files,
                     str(status.dataset_dir)))  # fmt: skip
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    for row in [header] + rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    if not all_present:
        print("\nget a missing dataset with: ticketlab data download NAME [--data-dir DIR]")
    return 0


def _cmd_download(args: argparse.Namespace) -> int:
    from ticketlab.datasets import download, get_dataset_spec

    spec = get_dataset_spec(args.name)
    paths = download(spec.name, args.data_dir, base_url=args.base_url, progress=not args.quiet)
    where = paths[0].parent if paths else "?"
    print(f"{spec.name}: {len(paths)} file(s) with verified md5 in {where}")
    return 0
