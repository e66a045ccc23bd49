"""Learning-rate schedules: the decay registry and :func:`lr_at`, the learning rate as a pure function of the
iteration (so that a run can be cut anywhere, or rewound, and continued with the same rates).

Each entry is a decay function ``(config, iteration) -> factor``; the warm-up factor is applied on top by
:func:`lr_at`. An entry's ``uses_milestones`` says whether it reads ``TrainConfig.milestones`` and ``gamma``
(``step``); :class:`~ticketlab.training.TrainConfig` refuses milestones for the others.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from typing import TYPE_CHECKING, Callable

from ticketlab.registry import Registry
from ticketlab.training.checks import check_int

if TYPE_CHECKING:
    from ticketlab.training.config import TrainConfig

__all__ = [
    "SCHEDULES",
    "SCHEDULE_REGISTRY",
    "get_schedule",
    "list_schedules",
    "lr_at",
    "milestone_schedules",
    "register_schedule",
]

Schedule = Callable[["TrainConfig", int], float]

#: The registered schedules: name -> decay factor ``(config, iteration) -> float``.
SCHEDULE_REGISTRY: Registry[Schedule] = Registry("schedule")
#: The registry's table as a plain dict (name -> decay function), for code that reads or edits it directly.
SCHEDULES: dict[str, Schedule] = SCHEDULE_REGISTRY._entries


def register_schedule(name: str, uses_milestones: bool = False):
    """Decorator adding a learning-rate decay ``(config, iteration) -> factor`` under ``name``.

    ``uses_milestones=True`` declares that the decay reads ``config.milestones`` (and ``gamma``): the
    configuration then requires milestones, and refuses them for every other schedule.
    """

    def deco(fn):
        fn.uses_milestones = bool(uses_milestones)
        SCHEDULE_REGISTRY.register(name, fn)
        return fn

    return deco


def list_schedules() -> list[str]:
    """Names of the registered learning-rate schedules, sorted."""
    return sorted(SCHEDULE_REGISTRY.names())


def get_schedule(name: str) -> Schedule:
    """The schedule registered as ``name``; a one-line :class:`ConfigError` listing the valid names otherwise."""
    return SCHEDULE_REGISTRY.get(name)


def milestone_schedules() -> list[str]:
    """Names of the registered schedules that use ``milestones`` (``["step"]``)."""
    return [name for name, fn in SCHEDULE_REGISTRY.items() if getattr(fn, "uses_milestones", False)]


# Registered in alphabetical order, so that the registry's list of choices (in error messages) is sorted.


@register_schedule("constant")
def _constant(config: "TrainConfig", iteration: int) -> float:
    """Factor 1 throughout."""
    return 1.0


@register_schedule("cosine")
def _cosine(config: "TrainConfig", iteration: int) -> float:
    """``(1 + cos(pi * i / T)) / 2`` with ``T = config.iterations``, ``i`` clamped to ``[0, T]``: 1 at iteration 0,
    0 at ``T`` (``torch.optim.lr_scheduler.CosineAnnealingLR`` with ``T_max=T``, ``eta_min=0``)."""
    t = min(iteration, config.iterations) / config.iterations
    return 0.5 * (1.0 + math.cos(math.pi * t))


@register_schedule("step", uses_milestones=True)
def _step(config: "TrainConfig", iteration: int) -> float:
    """``gamma ** k`` where ``k`` = number of milestones ``<= iteration`` (``torch.optim.lr_scheduler.MultiStepLR``
    stepped once per iteration)."""
    return config.gamma ** bisect_right(config.milestones, iteration)


def lr_at(config: "TrainConfig", iteration: int) -> float:
    """Learning rate of the step taken at ``iteration`` (after ``iteration`` steps), as a pure function.

    ``lr = config.lr * warmup(i) * decay(i)`` with ``warmup(i) = min(1, i / warmup_iterations)`` (1 without
    warm-up) and ``decay`` the registered schedule (``constant``: 1; ``step``: ``gamma ** #{milestones <= i}``;
    ``cosine``: ``(1 + cos(pi * min(i, T) / T)) / 2``). Both factors use absolute iterations, so warm-up and decay
    overlap rather than run one after the other.
    """
    return lr_with(config, get_schedule(config.schedule), check_int("iteration", iteration, 0))


def lr_with(config: "TrainConfig", schedule: Schedule, iteration: int) -> float:
    """:func:`lr_at` with the schedule already looked up and ``iteration`` already checked (the training loop's
    per-step form)."""
    factor = schedule(config, iteration)
    if config.warmup_iterations and iteration < config.warmup_iterations:
        factor *= iteration / config.warmup_iterations
    return config.lr * factor
