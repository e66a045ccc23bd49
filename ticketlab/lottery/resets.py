"""Reset modes and controls: registries whose entries carry what a pruned level starts from and how it retrains.

Reset modes (:data:`RESET_MODES`, ``RunConfig.reset``; the retraining length R defaults to the full schedule of T
iterations):

``rewind-init``  surviving weights back to their initial values θ0; train iterations [0, R)
                 (Frankle & Carbin 2019).
``rewind:K``     back to their values at iteration K (``K``, ``Kit`` or ``Kep`` for epochs); train [K, T), the
                 learning-rate schedule and the data order resuming at K (Frankle et al. 2020). R defaults to T − K.
``lr-rewind``    keep the trained weights and replay the last R iterations of the learning-rate schedule,
                 [T − R, T) (Renda et al. 2020's learning-rate rewinding).
``finetune``     keep the trained weights and train R iterations at the schedule's final learning rate
                 (Renda et al. 2020's fine-tuning baseline).
``reinit``       control: the chain's mask with fresh random initial values at every level; train [0, R).
``shuffle``      control: each layer's mask permuted at random (same per-layer count; Frankle et al. 2021), with
                 the initial values θ0; train [0, R). Its stored masks are therefore not nested.

A :class:`ResetMode` entry answers every question the IMP loop asks about its mode: the masks a level trains
(:meth:`~ResetMode.level_masks`), the weights it starts from (:meth:`~ResetMode.start_weights`), the iterations
of the schedule it retrains (:meth:`~ResetMode.window`), the optimizer and learning-rate schedule of that window
(:meth:`~ResetMode.train_config`), the checkpoint level 0 must keep (:attr:`~ResetMode.checkpoint`) and which
schedules it accepts (:meth:`~ResetMode.check`). Every retraining starts a fresh optimizer (no momentum or Adam
moments carried over from the previous level), as in Frankle & Carbin 2019 and OpenLTH.

Controls beside the chain (:data:`CONTROLS`, ``RunConfig.controls``; stored as branches of each level L ≥ 1, as
OpenLTH does): ``reinit`` (the level's mask, fresh initial values), ``shuffle`` (the level's mask permuted within
each layer, the chain's starting weights for that level) and ``random`` (a uniformly random mask with the same
per-layer kept counts, fresh initial values). Each is trained over the same iterations as the chain's retraining.
A :class:`Control` entry gives its masks, its starting weights and its seed stream.

This module needs no torch; the torch-using parts are imported when an entry is used.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from ticketlab.errors import ConfigError
from ticketlab.lottery import seeds
from ticketlab.registry import Registry

if TYPE_CHECKING:
    from ticketlab.lottery.config import RunConfig
    from ticketlab.masks import TensorInfo
    from ticketlab.training import TrainConfig

Weights = Mapping[str, Any]  # a state dict of torch tensors
Masks = dict[str, np.ndarray]


@dataclass(frozen=True)
class Sources:
    """The weights a pruned level may start from (state dicts of torch tensors).

    Attributes
    ----------
    init : the run's initial weights θ0.
    trained : the previous level's trained weights.
    rewind : the checkpoint level 0 kept for the mode (:attr:`ResetMode.checkpoint`), else ``None``.
    fresh : callable(seed) -> state dict of a freshly initialised model.
    seed, level : the run's seed and the level being started.
    """

    init: Weights
    trained: Weights
    rewind: Weights | None
    fresh: Callable[[int], Weights]
    seed: int
    level: int


def _on_pruned(op: Callable, masks: Mapping[str, np.ndarray], tensors: Sequence[TensorInfo],
               rng: np.random.Generator) -> Masks:
    """Apply a mask operation of :mod:`ticketlab.pruning` to the pruned tensors; the others are kept."""
    pruned = {t.name: masks[t.name] for t in tensors if t.pruned}
    new = op(pruned, rng)
    return {t.name: new.get(t.name, masks[t.name]) for t in tensors}


def shuffled(masks: Mapping[str, np.ndarray], tensors: Sequence[TensorInfo], rng: np.random.Generator) -> Masks:
    """Each pruned tensor's mask permuted at random (same kept count)."""
    from ticketlab.pruning import shuffle_mask

    return _on_pruned(shuffle_mask, masks, tensors, rng)


def random_like(masks: Mapping[str, np.ndarray], tensors: Sequence[TensorInfo], rng: np.random.Generator) -> Masks:
    """A uniformly random mask of each pruned tensor with the same kept count."""
    from ticketlab.pruning import random_mask_like

    return _on_pruned(random_mask_like, masks, tensors, rng)


# ----------------------------------------------------------------------------------------------------------
# Reset modes


class ResetMode:
    """One reset mode. The defaults are rewind-init's; each mode overrides what differs.

    ``k`` below is the rewind iteration K in iterations (0 for modes without one).
    """

    name: str = ""
    description: str = ""
    #: the checkpoint level 0 keeps at iteration K for :meth:`start_weights` (``None``: none)
    checkpoint: str | None = None
    #: the name in an error message's list of choices
    usage: str = ""

    @property
    def mode(self) -> str:
        """The name without its argument: ``"rewind"`` for ``rewind:K``."""
        return self.name.partition(":")[0]

    def parse(self, text: str) -> tuple[int | None, str | None] | None:
        """``(K, unit)`` if ``text`` names this mode (``(None, None)`` for a mode without argument), else ``None``."""
        return (None, None) if text == self.name else None

    def check(self, config: RunConfig, k: int) -> None:
        """Refuse a schedule this mode cannot retrain in (nothing to refuse by default)."""

    def retrain_limit(self, config: RunConfig, k: int) -> int | None:
        """The largest retraining length R the schedule leaves; ``None``: any."""
        return config.train.iterations - k

    def level_masks(self, masks: Masks, tensors: Sequence[TensorInfo], seed: int, level: int) -> Masks:
        """The masks a level trains, given the masks pruning produced."""
        return masks

    def start_weights(self, sources: Sources) -> Weights:
        """The weights the survivors start from."""
        return sources.init

    def window(self, config: RunConfig, k: int) -> tuple[int, int]:
        """The iterations ``[start, stop)`` of the schedule retrained at a pruned level."""
        return 0, config.retrain_iterations or config.train.iterations

    def train_config(self, config: RunConfig) -> TrainConfig:
        """Optimizer, learning-rate schedule and length of the retraining (a fresh optimizer every level)."""
        return config.train

    def __repr__(self) -> str:
        return f"<reset mode {self.name}>"


RESET_MODES: Registry[ResetMode] = Registry("reset mode")


def _register_reset(cls: type[ResetMode]) -> type[ResetMode]:
    RESET_MODES.register(cls.name, cls())
    return cls


@_register_reset
class RewindInit(ResetMode):
    name = "rewind-init"
    description = "surviving weights back to their initial values (Frankle & Carbin 2019)"


@_register_reset
class Rewind(ResetMode):
    name = "rewind:K"
    description = ("back to their values at iteration K (or 'Kep' epochs), schedule and data order resumed at K "
                   "(Frankle et al. 2020)")
    checkpoint = "rewind"
    usage = "rewind:K (K iterations, e.g. rewind:500, or epochs, e.g. rewind:2ep)"
    _pattern = re.compile(r"^rewind:(\d+)(it|ep)?$")

    def parse(self, text: str) -> tuple[int | None, str | None] | None:
        m = self._pattern.match(text)
        return (int(m.group(1)), m.group(2) or "it") if m else None

    def check(self, config: RunConfig, k: int) -> None:
        if k >= config.train.iterations:
            raise ConfigError(
                f"reset {config.reset} rewinds to iteration {k}, which is not before the end "
                f"of training ({config.train.iterations} iterations); choose a smaller K"
            )

    def start_weights(self, sources: Sources) -> Weights:
        return sources.rewind

    def window(self, config: RunConfig, k: int) -> tuple[int, int]:
        total = config.train.iterations
        return k, min(total, k + (config.retrain_iterations or total - k))


@_register_reset
class LrRewind(ResetMode):
    name = "lr-rewind"
    description = "keep the trained weights, replay the learning-rate schedule (Renda et al. 2020)"

    def start_weights(self, sources: Sources) -> Weights:
        return sources.trained

    def window(self, config: RunConfig, k: int) -> tuple[int, int]:
        total = config.train.iterations
        return total - (config.retrain_iterations or total), total


@_register_reset
class Finetune(ResetMode):
    name = "finetune"
    description = "keep the trained weights, train at the final learning rate (Renda et al. 2020)"

    def retrain_limit(self, config: RunConfig, k: int) -> int | None:
        return None  # fine-tuning may run longer than the schedule

    def start_weights(self, sources: Sources) -> Weights:
        return sources.trained

    def train_config(self, config: RunConfig) -> TrainConfig:
        """R iterations at the schedule's final learning rate, no decay or warm-up."""
        from ticketlab.training import lr_at

        final = lr_at(config.train, config.train.iterations - 1)
        r = config.retrain_iterations or config.train.iterations
        return dataclasses.replace(config.train, lr=final, schedule="constant", milestones=(), warmup_iterations=0,
                                   iterations=r)


@_register_reset
class Reinit(ResetMode):
    name = "reinit"
    description = "control: same mask, fresh random initial values at every level (Frankle & Carbin 2019)"

    def start_weights(self, sources: Sources) -> Weights:
        return sources.fresh(seeds.level_seed(sources.seed, seeds.REINIT, sources.level))


@_register_reset
class Shuffle(ResetMode):
    name = "shuffle"
    description = "control: each layer's mask permuted at random, initial values kept (Frankle et al. 2021)"

    def level_masks(self, masks: Masks, tensors: Sequence[TensorInfo], seed: int, level: int) -> Masks:
        return shuffled(masks, tensors, seeds.level_rng(seed, seeds.SHUFFLE, level))


def resolve_reset(reset: str) -> tuple[ResetMode, int | None, str | None]:
    """The entry a reset string names, with its K and unit: ``"rewind:500"`` → (rewind:K entry, 500, "it")."""
    if isinstance(reset, str):
        for _, entry in RESET_MODES.items():
            parsed = entry.parse(reset)
            if parsed is not None:
                return (entry, *parsed)
    choices = ", ".join(entry.usage or name for name, entry in RESET_MODES.items())
    raise ConfigError(f"unknown reset mode {reset!r}; choose one of: {choices}")


def parse_reset(reset: str) -> tuple[str, int | None, str | None]:
    """Split a reset mode into (mode, K, unit): ``"rewind:500"`` → ``("rewind", 500, "it")``."""
    entry, k, unit = resolve_reset(reset)
    return entry.mode, k, unit


# ----------------------------------------------------------------------------------------------------------
# Controls


class Control:
    """One control trained beside the chain at every pruned level, drawing from its own seed stream."""

    name: str = ""
    description: str = ""
    stream: int = 0

    def masks(self, masks: Masks, tensors: Sequence[TensorInfo], rng: np.random.Generator) -> Masks:
        """The control's masks, given the level's (default: the level's own)."""
        return masks

    def start_weights(self, chain_start: Weights, fresh: Callable[[int], Weights], seed: int) -> Weights:
        """Its starting weights, given the chain's for the level, the model factory and the control's seed."""
        return fresh(seed)

    def __repr__(self) -> str:
        return f"<control {self.name}>"


CONTROLS: Registry[Control] = Registry("control")


def _register_control(cls: type[Control]) -> type[Control]:
    CONTROLS.register(cls.name, cls())
    return cls


@_register_control
class ReinitControl(Control):
    name = "reinit"
    description = "the level's mask with fresh random initial values"
    stream = seeds.CONTROL_REINIT


@_register_control
class ShuffleControl(Control):
    name = "shuffle"
    description = "the level's mask permuted within each layer (same per-layer count)"
    stream = seeds.CONTROL_SHUFFLE

    def masks(self, masks: Masks, tensors: Sequence[TensorInfo], rng: np.random.Generator) -> Masks:
        return shuffled(masks, tensors, rng)

    def start_weights(self, chain_start: Weights, fresh: Callable[[int], Weights], seed: int) -> Weights:
        return chain_start


@_register_control
class RandomControl(Control):
    name = "random"
    description = "a uniformly random mask with the same per-layer kept counts, fresh initial values"
    stream = seeds.CONTROL_RANDOM

    def masks(self, masks: Masks, tensors: Sequence[TensorInfo], rng: np.random.Generator) -> Masks:
        return random_like(masks, tensors, rng)

    def start_weights(self, chain_start: Weights, fresh: Callable[[int], Weights], seed: int) -> Weights:
        return fresh(seeds.derive(seed, 1))
