"""How to train one network: :class:`TrainConfig`, immutable and validated on construction."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

import numpy as np

from ticketlab.errors import ConfigError
from ticketlab.training.checks import check_float, check_int
from ticketlab.training.optimizers import get_optimizer, momentum_optimizers
from ticketlab.training.schedules import get_schedule, milestone_schedules

__all__ = ["TrainConfig"]


@dataclass(frozen=True)
class TrainConfig:
    """How to train one network. Immutable; validated on construction (:class:`ConfigError`).

    The defaults are Frankle & Carbin (2019)'s LeNet-300-100 setting (Adam, lr 1.2e-3, batch 60, 50,000
    iterations) with evaluation only at the end.

    Attributes
    ----------
    optimizer : str
        Name of a registered optimizer (:data:`~ticketlab.training.OPTIMIZER_REGISTRY`).
    lr : float
        Peak learning rate, > 0.
    momentum : float
        SGD momentum in [0, 1); must be 0 for Adam/AdamW (their momentum is ``betas[0]``).
    nesterov : bool
        Nesterov momentum (SGD only, needs ``momentum > 0``).
    weight_decay : float
        >= 0. SGD and Adam add ``weight_decay * w`` to the gradient (L2); AdamW decays the weights directly.
    betas : (float, float)
        Adam/AdamW decay rates of the first and second moment estimates, each in [0, 1).
    eps : float
        Adam/AdamW denominator term, > 0.
    schedule : str
        Name of a registered learning-rate decay (:data:`~ticketlab.training.SCHEDULE_REGISTRY`).
    milestones : tuple of int
        ``"step"`` schedule only: strictly increasing iterations in (0, iterations) at which the learning rate is
        multiplied by ``gamma``.
    gamma : float
        Multiplicative decay at each milestone, in (0, 1].
    warmup_iterations : int
        Linear warm-up: the learning rate is multiplied by ``min(1, i / warmup_iterations)``, so iteration 0 has
        learning rate 0. 0 disables warm-up.
    batch_size : int
        Examples per optimizer step.
    iterations : int
        Total optimizer steps of the run (the length of the schedule), >= 1.
    eval_every : int
        Iterations between evaluations for the training curve (on the grid ``0, E, 2E, …`` and at ``iterations``);
        0 = evaluate only at the end.
    """

    optimizer: str = "adam"
    lr: float = 1.2e-3
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    schedule: str = "constant"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    warmup_iterations: int = 0
    batch_size: int = 60
    iterations: int = 50_000
    eval_every: int = 0

    def __post_init__(self) -> None:
        def put(name, value):
            object.__setattr__(self, name, value)

        optimizer = get_optimizer(self.optimizer)
        schedule = get_schedule(self.schedule)
        put("lr", check_float("lr", self.lr))
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0; got {self.lr:g}")
        put("momentum", check_float("momentum", self.momentum))
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"momentum must be in [0, 1); got {self.momentum:g}")
        if not isinstance(self.nesterov, (bool, np.bool_)):
            raise ConfigError(f"nesterov must be true or false; got {self.nesterov!r}")
        put("nesterov", bool(self.nesterov))
        put("weight_decay", check_float("weight_decay", self.weight_decay))
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0; got {self.weight_decay:g}")
        try:
            betas = tuple(self.betas)
        except TypeError:
            betas = ()
        if len(betas) != 2:
            raise ConfigError(f"betas must be two numbers (beta1, beta2); got {self.betas!r}")
        betas = tuple(check_float("betas", b) for b in betas)
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ConfigError(f"betas must each be in [0, 1); got {betas}")
        put("betas", betas)
        put("eps", check_float("eps", self.eps))
        if self.eps <= 0:
            raise ConfigError(f"eps must be > 0; got {self.eps:g}")
        if not getattr(optimizer, "uses_momentum", False):
            users = " and ".join(momentum_optimizers()) or "no registered"
            if self.momentum != 0:
                raise ConfigError(
                    f"momentum is used only by the {users} optimizer; got momentum={self.momentum:g} with "
                    f"{self.optimizer!r} (set betas instead)"
                )
            if self.nesterov:
                raise ConfigError(f"nesterov is used only by the {users} optimizer; got it with {self.optimizer!r}")
        elif self.nesterov and self.momentum == 0:
            raise ConfigError("nesterov needs momentum > 0; got momentum=0")
        put("iterations", check_int("iterations", self.iterations, 1))
        put("batch_size", check_int("batch_size", self.batch_size, 1))
        put("eval_every", check_int("eval_every", self.eval_every, 0))
        put("warmup_iterations", check_int("warmup_iterations", self.warmup_iterations, 0))
        if self.warmup_iterations > self.iterations:
            raise ConfigError(
                f"warmup_iterations must be <= iterations ({self.iterations}); got {self.warmup_iterations}"
            )
        put("gamma", check_float("gamma", self.gamma))
        if not 0.0 < self.gamma <= 1.0:
            raise ConfigError(f"gamma must be in (0, 1]; got {self.gamma:g}")
        if isinstance(self.milestones, (str, bytes)):
            raise ConfigError(f"milestones must be a list of iterations; got {self.milestones!r}")
        try:
            milestones = tuple(check_int("milestones", m) for m in self.milestones)
        except TypeError:
            raise ConfigError(f"milestones must be a list of iterations; got {self.milestones!r}") from None
        put("milestones", milestones)
        if getattr(schedule, "uses_milestones", False):
            if not milestones:
                raise ConfigError(
                    f"the {self.schedule} schedule needs milestones (iterations at which the lr drops); got none"
                )
            if any(b <= a for a, b in zip(milestones, milestones[1:])):
                raise ConfigError(f"milestones must be strictly increasing; got {list(milestones)}")
            if milestones[0] <= 0 or milestones[-1] >= self.iterations:
                raise ConfigError(
                    f"milestones must lie in (0, iterations={self.iterations}) and are counted in iterations, "
                    f"not epochs; got {list(milestones)}"
                )
        elif milestones:
            users = " and ".join(milestone_schedules()) or "no registered"
            raise ConfigError(f"milestones are used only by the {users} schedule; got them with {self.schedule!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain (JSON-compatible) dict of all fields; tuples become lists."""
        d = asdict(self)
        d["betas"] = list(self.betas)
        d["milestones"] = list(self.milestones)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrainConfig":
        """Inverse of :meth:`to_dict`; missing keys take their defaults, unknown keys raise :class:`ConfigError`."""
        if not isinstance(d, Mapping):
            raise ConfigError(f"training options must be a mapping; got {type(d).__name__}")
        names = [f.name for f in fields(cls)]
        unknown = [k for k in d if k not in names]
        if unknown:
            raise ConfigError(f"unknown training option {unknown[0]!r}; valid options: {', '.join(names)}")
        return cls(**dict(d))
