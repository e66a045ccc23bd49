"""Lottery tickets by iterative magnitude pruning (IMP): train, prune, reset, retrain, one ticket-file level at a time.

    from ticketlab.lottery import RunConfig, run_imp
    run_imp(RunConfig(model="lenet300", dataset="mnist", levels=5, reset="rewind-init"), "run.h5")

The loop (Frankle & Carbin 2019, Strategy 1): train the dense network (level 0); then for each level L = 1..n,
prune the fraction ``rate`` of the remaining weights of the previous level's *trained* network (masks are
nested), set the surviving weights according to the reset mode, retrain, evaluate, and write the level. Controls
(``reinit``, ``shuffle``, ``random``) are trained beside the chain at every pruned level and stored as branches.

Everything random is seeded from ``(seed, purpose, level)``, never from a running generator, so a run resumed
after an interruption at any moment produces the same masks bit for bit.

Modules
-------
``config``       :class:`RunConfig`, everything that defines a run.
``resets``       the registries of reset modes (:data:`RESET_MODES`) and controls (:data:`CONTROLS`), whose
                 entries carry their behaviour: start weights, masks, retraining window, optimizer settings.
``seeds``        the seed streams.
``data``         :class:`RunData` (bring your own data) and :func:`load_data`.
``distributed``  :func:`resolve_device` and :class:`Distributed` (the process group under torchrun).
``start``        :class:`StartTicket`: a ticket's mask and initial weights to start a run from.
``run``          the loop: :class:`IMPRun` and :func:`run_imp`.
``group``        several runs at once, their chains trained in batched groups: :func:`run_imps`,
                 :class:`IMPGroup`.

The registries need no torch; the names that do are loaded on first use, so listing reset modes (``ticketlab
train --help``) stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from ticketlab.lottery.resets import CONTROLS, RESET_MODES, Control, ResetMode, parse_reset, resolve_reset

# name -> submodule, imported on first access (these import torch)
_LAZY = {
    "RunConfig": "config",
    "RunData": "data", "load_data": "data",
    "Distributed": "distributed", "resolve_device": "distributed",
    "StartTicket": "start", "load_start_ticket": "start",
    "IMPRun": "run", "run_imp": "run",
    "IMPGroup": "group", "run_imps": "group",
}

__all__ = ["CONTROLS", "RESET_MODES", "Control", "ResetMode", "parse_reset", "resolve_reset", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"ticketlab.lottery.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ticketlab.lottery' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
