"""Seed streams of an IMP run: every random decision at level L draws from ``derive_seed(seed, STREAM, L)``.

Seeding each decision from (seed, purpose, level), never from a running generator, is what lets a run resumed
after an interruption at any moment produce the same masks bit for bit. The stream numbers are recorded in every
ticket file (``config["seeds"]``), so changing one changes what every later run draws.
"""

from __future__ import annotations

from typing import Any

import numpy as np

INIT, PRUNE, REINIT, SHUFFLE, CONTROL_REINIT, CONTROL_SHUFFLE, CONTROL_RANDOM = range(100, 107)

#: Stream numbers by purpose, as the ticket file records them.
STREAMS = {"init": INIT, "random pruning": PRUNE, "reinit reset": REINIT, "shuffle reset": SHUFFLE,
           "reinit control": CONTROL_REINIT, "shuffle control": CONTROL_SHUFFLE, "random control": CONTROL_RANDOM}


def derive(seed: int, *keys: int) -> int:
    """:func:`ticketlab.training.derive_seed` (imported on use, so that this module needs no torch)."""
    from ticketlab.training import derive_seed

    return derive_seed(seed, *keys)


def level_seed(seed: int, stream: int, level: int) -> int:
    """The seed of ``stream`` at ``level`` of a run seeded with ``seed``."""
    return derive(seed, stream, level)


def level_rng(seed: int, stream: int, level: int) -> np.random.Generator:
    """A numpy generator seeded with :func:`level_seed`."""
    return np.random.default_rng(level_seed(seed, stream, level))


def seeds_record(seed: int, split_seed: int) -> dict[str, Any]:
    """The ``seeds`` entry of a ticket file's config: the seeds used directly and how the others are derived."""
    return {
        "init": level_seed(seed, INIT, 0), "data_order": seed, "split": split_seed,
        "derivation": "every other random decision at level L draws from "
                      "ticketlab.training.derive_seed(seed, stream, L) with streams " + ", ".join(
                          f"{k}={v}" for k, v in STREAMS.items()),
    }
