"""Opening ticket files and choosing their levels: one file's level, and the levels several files share.

``FILE:LEVEL`` specs and the same-model check are the store's (:mod:`ticketlab.store.selection`); this module
adds what the loaders need on top: opening a mix of paths and open :class:`~ticketlab.store.TicketFile`
objects, resolving a level of an open file, and the levels common to several files.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator, Sequence

from ticketlab.errors import ConfigError, TicketFileError
from ticketlab.masks import TensorInfo
from ticketlab.store import Selection, TicketFile, check_same_model, resolve_level

PathLike = str | os.PathLike


@contextlib.contextmanager
def opened(paths: Sequence[PathLike | TicketFile]) -> Iterator[list[TicketFile]]:
    """Open every path (closed again at the end; TicketFile objects are used as given), refusing an empty list."""
    if not paths:
        raise ConfigError("no ticket files given")
    with contextlib.ExitStack() as stack:
        tickets = []
        for p in paths:
            tickets.append(p if isinstance(p, TicketFile) else stack.enter_context(TicketFile(p)))
        yield tickets


@contextlib.contextmanager
def closing(selections: Sequence[Selection]) -> Iterator[Sequence[Selection]]:
    """Close the tickets of :func:`ticketlab.store.select`'s selections at the end of the block."""
    try:
        yield selections
    finally:
        for s in selections:
            s.ticket.close()


def same_model(tickets: Sequence[TicketFile]) -> list[TensorInfo]:
    """The common tensor table of open files: :func:`ticketlab.store.check_same_model` for TicketFile objects."""
    return check_same_model([Selection(str(t.path), t.path, -1, t) for t in tickets])


def unique_tickets(tickets: Sequence[TicketFile]) -> list[TicketFile]:
    """The tickets with each file once (a file given with several levels appears several times)."""
    seen: dict[str, TicketFile] = {}
    for t in tickets:
        seen.setdefault(str(t.path), t)
    return list(seen.values())


def common_levels(tickets: Sequence[Any]) -> list[int]:
    """The levels every file has, sorted (files as TicketFile objects or selections)."""
    tickets = [getattr(t, "ticket", t) for t in tickets]
    if not tickets:
        return []
    common = set(tickets[0].levels)
    for t in tickets[1:]:
        common &= set(t.levels)
    return sorted(common)


def last_common_level(tickets: Sequence[Any], level: int | None = None, *, pruned: bool = False) -> int | None:
    """``level`` if every file has it, else None; default: the last level common to all (None if none).

    With ``pruned``, level 0 (the dense network) does not count as a common level.
    """
    common = [lv for lv in common_levels(tickets) if not (pruned and lv == 0)]
    if level is not None:
        return level if level in common else None
    return common[-1] if common else None


def levels_text(levels: Sequence[int], dash: str = "-") -> str:
    """Levels for a table: ``"0-8"`` for a run of consecutive levels, else ``"0,2,5"``; ``"none"`` if empty."""
    levels = list(levels)
    if not levels:
        return "none"
    return (f"{levels[0]}{dash}{levels[-1]}" if levels == list(range(levels[0], levels[-1] + 1))
            else ",".join(map(str, levels)))


__all__ = ["opened", "closing", "same_model", "unique_tickets", "resolve_level", "common_levels", "last_common_level",
           "levels_text"]
