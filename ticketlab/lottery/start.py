"""A start ticket: the mask (and initial weights) of a level of a ticket file, to start a new run from.

    ticket = load_start_ticket("consensus.h5:0")             # FILE[:LEVEL]; default: the last level
    run = IMPRun(config, "retrain.h5")
    run.run(start_mask=ticket.masks_for(run.tensors, config.model), start_init=ticket.init)

``ticketlab train --mask FILE[:LEVEL]`` is this: level 0 of the new run is trained with the ticket's mask, from
its initial weights (or, with ``fresh_init``, from the new run's own; a ticket without initial weights needs
``fresh_init``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ticketlab import store
from ticketlab.errors import ConfigError
from ticketlab.masks import TensorInfo, check_masks


@dataclass(frozen=True)
class StartTicket:
    """The masks of one level of a ticket file and that file's initial weights.

    Attributes
    ----------
    masks : {tensor name: bool array}
    init : state dict of numpy arrays, or None
        The file's initial weights (``None`` when a fresh start was asked for).
    source : str
        ``"FILE:LEVEL"``, for messages.
    description : str
        What the mask is (:func:`source_description`): the level, the source file's method and task. Runs from
        masks of one description are one method (their seeds one population), whatever the file names.
    """

    masks: Mapping[str, np.ndarray]
    init: Mapping[str, Any] | None
    source: str
    description: str = ""

    def masks_for(self, tensors: Sequence[TensorInfo], model: str) -> dict[str, np.ndarray]:
        """The masks checked against a run's tensor table (names, then shapes); refused naming the mismatch."""
        names = {t.name for t in tensors}
        if set(self.masks) != names:
            diff = sorted(set(self.masks) ^ names)
            raise ConfigError(f"{self.source}: its layers do not match model {model!r} (first mismatch: "
                              f"{diff[0]!r})")
        try:
            return check_masks(self.masks, tensors)
        except ConfigError as err:
            raise ConfigError(f"{self.source}: {err}") from None


def load_start_ticket(spec: str, *, fresh_init: bool = False) -> StartTicket:
    """``FILE[:LEVEL]`` → its level's masks (default: the last level) and the file's initial weights.

    ``fresh_init`` leaves the initial weights out, so the run initialises from its own seed. A mask-only ticket
    (no ``init`` checkpoint: imported masks, or ``ticketlab intersect`` of them) is refused without
    ``fresh_init``, rather than silently trained from other weights than the ticket's.
    """
    (sel,) = store.select([spec])
    source = f"{sel.path}:{sel.level}"
    with sel.ticket as t:
        if fresh_init:
            init = None
        elif "init" in t.checkpoints():
            init = t.weights("init")
        else:
            raise ConfigError(f"{sel.path} holds masks only (no initial weights); pass --fresh-init to initialise "
                              f"from --seed, or make the ticket with initial weights ('ticketlab intersect ... "
                              f"--init FILE')")
        return StartTicket(t.masks(sel.level), init, source, source_description(t, sel.level))


def source_description(ticket: store.TicketFile, level: int) -> str:
    """What level ``level`` of an open ticket file is, as a start mask: ``"level 8 of 'IMP layer_magnitude
    20%/level ..., reset rewind-init' on mnist[0-4]"``; a derived ticket (``ticketlab intersect``) also names
    the levels and methods it was combined from. File names and seeds are left out on purpose: the same level of
    the same method's runs of different seeds describe alike."""
    text = ticket.method or "a ticket file"
    config = ticket.config if isinstance(ticket.config, Mapping) else {}
    sources = config.get("sources")
    if isinstance(sources, list) and sources:
        parts = sorted({f"level {s.get('level')} of '{s.get('method')}'" for s in sources if isinstance(s, Mapping)})
        text += " of " + "; ".join(parts)
    task = ticket.dataset.name if ticket.dataset is not None else None
    return f"level {level} of '{text}'" + (f" on {task}" if task else "")


def start_record(source: str | None, start_mask: Mapping[str, np.ndarray] | None,
                 start_init: Mapping[str, Any] | None, description: str | None = None) -> dict[str, str] | None:
    """What a run records of the mask it starts from (its ``start`` config entry; :attr:`IMPRun.start`):
    ``mask`` names it (``"FILE:LEVEL"``, default ``"a given mask"``), ``init`` says whether its initial weights
    came with it (``"ticket"``) or are the run's own (``"fresh"``), ``source`` describes it
    (:func:`source_description`) when known. None without a start mask."""
    if start_mask is None:
        return None
    record = {"mask": source or "a given mask", "init": "ticket" if start_init is not None else "fresh"}
    if description:
        record["source"] = description
    return record


def start_method(config: Any, start: Mapping[str, str] | None) -> str:
    """The method description of a run (``ticketlab info``), naming the ticket it starts from, if any."""
    if start is None:
        return config.method()
    weights = "its initial weights" if start.get("init") == "ticket" else "fresh initial weights"
    if config.levels == 0:
        return f"mask of {start['mask']} trained from {weights}"
    return f"{config.method()}, from the mask of {start['mask']} with {weights}"


def start_text(start: Mapping[str, str] | None) -> str:
    """``"the mask of FILE:LEVEL (its initial weights)"`` or ``"the dense network"``, for messages."""
    if not start:
        return "the dense network"
    return f"the mask of {start.get('mask')} ({'its' if start.get('init') == 'ticket' else 'fresh'} initial weights)"


def same_start(a: Mapping[str, str] | None, b: Mapping[str, str] | None) -> bool:
    """Whether two ``start`` records name the same mask (the file compared by resolved path, and its level) and
    the same initialisation."""
    def key(r):
        if not r:
            return None
        path, sep, level = str(r.get("mask", "")).rpartition(":")
        if not sep or not level.isdigit():
            path, level = str(r.get("mask", "")), ""
        try:
            path = str(Path(path).resolve())
        except (OSError, RuntimeError):
            pass
        return path, level, r.get("init")
    return key(a) == key(b)
