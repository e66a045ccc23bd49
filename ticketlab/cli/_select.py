"""Choosing levels of ticket files on the command line, and printing tidy results.

Analysis commands take one or more ticket files; a level is chosen for all with ``--level N`` (default: each
file's last level) or per file as ``FILE:N``. Files whose models differ (tensor names or shapes) are refused,
naming the first mismatch.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ticketlab.cli._output import fmt_float, fmt_int, fmt_str, table, to_csv, to_json
from ticketlab.errors import TicketFileError
from ticketlab.masks import TensorInfo
from ticketlab.store import TicketFile


@dataclass
class Selection:
    """One ticket file and the level chosen from it."""

    spec: str          # as typed: "run.h5" or "run.h5:3"
    path: Path
    level: int
    ticket: TicketFile

    @property
    def label(self) -> str:
        """A short name for tables: the file name (with ':level' when several levels of one file are compared)."""
        return self.path.name


def parse_spec(spec: str) -> tuple[Path, int | None]:
    """``"run.h5:3"`` → (run.h5, 3); ``"run.h5"`` → (run.h5, None). A path that exists as typed wins."""
    head, sep, tail = spec.rpartition(":")
    if sep and head and tail.lstrip("-").isdigit() and not Path(spec).exists():
        return Path(head), int(tail)
    return Path(spec), None


def select(specs: Sequence[str], level: int | None = None) -> list[Selection]:
    """Open each file and resolve its level (``FILE:N`` > ``--level`` > the file's last level)."""
    out = []
    for spec in specs:
        path, own = parse_spec(spec)
        ticket = TicketFile(path)
        levels = ticket.levels
        chosen = own if own is not None else level
        if chosen is None:
            if not levels:
                raise TicketFileError(f"{path}: has no levels yet")
            chosen = levels[-1]
        if chosen < 0 and levels:  # -1 = last, as in Python
            chosen = levels[chosen] if -chosen <= len(levels) else chosen
        if chosen not in levels:
            listing = ", ".join(map(str, levels)) or "none yet"
            raise TicketFileError(f"{path}: no level {chosen}; levels present: {listing}")
        out.append(Selection(spec, path, chosen, ticket))
    return out


def check_same_model(selections: Sequence[Selection]) -> list[TensorInfo]:
    """The common tensor table; raises naming the first tensor whose name or shape differs."""
    first = selections[0]
    ref = first.ticket.tensors
    for s in selections[1:]:
        other = s.ticket.tensors
        for i in range(max(len(ref), len(other))):
            a = ref[i] if i < len(ref) else None
            b = other[i] if i < len(other) else None
            if a is None or b is None or a.name != b.name or a.shape != b.shape:
                def describe(t: TensorInfo | None) -> str:
                    return "nothing" if t is None else f"{t.name} {list(t.shape)}"

                raise TicketFileError(
                    f"{s.path} and {first.path} hold different models: tensor {i} is {describe(b)} in "
                    f"{s.path.name} but {describe(a)} in {first.path.name}; only tickets of one model can be compared"
                )
    return ref


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


__all__ = ["Selection", "parse_spec", "select", "check_same_model", "add_selection_arguments",
           "add_output_arguments", "emit", "fmt_float", "fmt_int", "fmt_str"]
