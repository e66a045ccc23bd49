"""Options shared by the analysis commands and how they print: ``FILE[:LEVEL] ...``, ``--level``,
``--json``/``--csv``, and :func:`emit`.

Resolving ``FILE:LEVEL`` specs and checking that files hold one model is library code
(:mod:`ticketlab.store.selection`); this module only declares the arguments and formats the results.
"""

from __future__ import annotations

import argparse
from typing import Any, Sequence

from ticketlab.cli._output import table, to_csv, to_json


def add_selection_arguments(p: argparse.ArgumentParser) -> None:
    """The ``FILE[:LEVEL] ...`` positional arguments and ``--level``. Commands that need two or more check it."""
    p.add_argument("files", nargs="+", metavar="FILE[:LEVEL]", help="ticket files, each optionally with ':LEVEL'")
    p.add_argument("--level", type=int, help="level to use for every file without ':LEVEL' (default: the last)")


def add_output_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--json", action="store_true", help="print JSON records instead of a table")
    g.add_argument("--csv", action="store_true", help="print CSV with the same columns")


def emit(args: argparse.Namespace, records: list[dict[str, Any]], columns: Sequence[tuple[str, str, Any]],
         title: str | None = None) -> None:
    """Print records as a table (default), JSON (``--json``) or CSV (``--csv``) with the same keys."""
    keys = [c[0] for c in columns]
    if getattr(args, "json", False):
        print(to_json([{k: r.get(k) for k in keys} for r in records]))
    elif getattr(args, "csv", False):
        print(to_csv(records, keys), end="")
    else:
        if title:
            print(title)
        print(table(records, columns))


__all__ = ["add_selection_arguments", "add_output_arguments", "emit"]
