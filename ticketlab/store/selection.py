"""Choosing levels of ticket files: ``FILE:LEVEL`` specs, level resolution and the same-model check.

Analyses take one or more ticket files; a level is chosen for all (``level=N``, the command line's
``--level N``; default: each file's last level) or per file as ``FILE:N``. Files whose models differ (tensor
names or shapes) cannot be compared: :func:`check_same_model` refuses them, naming the first mismatch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ticketlab.errors import TicketFileError
from ticketlab.masks import TensorInfo
from ticketlab.store.reader import TicketFile

__all__ = ["Selection", "parse_spec", "select", "check_same_model"]


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


def resolve_level(ticket: TicketFile, level: int | None = None) -> int:
    """The level of an open file to read: ``level`` (negative counts from the end, as in Python), default the
    last. Raises :class:`TicketFileError` naming the file when it has no levels or not that one."""
    levels = ticket.levels
    if level is None:
        if not levels:
            raise TicketFileError(f"{ticket.path}: has no levels yet")
        return levels[-1]
    if level < 0 and -level <= len(levels):
        return levels[level]
    if level not in levels:
        listing = ", ".join(map(str, levels)) or "none yet"
        raise TicketFileError(f"{ticket.path}: no level {level}; levels present: {listing}")
    return level


def select(specs: Sequence[str], level: int | None = None) -> list[Selection]:
    """Open each file and resolve its level (``FILE:N`` > ``level`` > the file's last level; negative levels
    count from the end, as in Python)."""
    out = []
    for spec in specs:
        path, own = parse_spec(spec)
        ticket = TicketFile(path)
        chosen = resolve_level(ticket, own if own is not None else level)
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
