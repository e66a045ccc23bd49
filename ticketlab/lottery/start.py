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
    """

    masks: Mapping[str, np.ndarray]
    init: Mapping[str, Any] | None
    source: str

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
        return StartTicket(t.masks(sel.level), init, source)
