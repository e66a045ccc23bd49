"""What a chain of a batched group is given (:class:`ChainSpec`) and what it hands back (:class:`ChainResult`), and
how chains are grouped (:func:`group_key`, :func:`plan_groups`, :func:`default_chains_per_process`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch

from ticketlab.errors import ConfigError
from ticketlab.training import TrainConfig, TrainResult, TrainState
from ticketlab.training.checks import check_int

__all__ = ["ChainSpec", "ChainResult", "group_key", "plan_groups", "default_chains_per_process"]


@dataclass
class ChainSpec:
    """One chain of a group: the arguments of one single-chain :func:`~ticketlab.training.train` call.

    Attributes
    ----------
    weights : state dict
        Starting weights (every parameter and buffer of the model); pruned weights are zeroed.
    config : TrainConfig
        The chain's schedule (its learning rate, decay, warm-up, length and evaluation grid are its own).
    seed : int
        Seeds the chain's data order and augmentation.
    masks : mapping of str to bool array, or None
        Mask per parameter name (``True`` = kept).
    start_iteration, stop_iteration : int
        The window ``[start, stop)`` of the schedule to train (``stop`` default: ``config.iterations``): rewind-init
        ``[0, R)``, rewind:K ``[K, K + R)``, lr-rewind ``[T - R, T)``, finetune ``[0, R)`` of its own config.
    state : TrainState, optional
        ``result.state`` of a call (batched or single-chain) that stopped at ``start_iteration``, to continue it.
    snapshot_iterations : tuple of int
        Iterations in ``[start, stop]`` at which to keep a copy of the weights (taken before that iteration's
        step, like the single path's ``callback``): IMP's rewind point.
    name : str
        A label for messages.
    """

    weights: Mapping[str, Any]
    config: TrainConfig
    seed: int
    masks: Mapping[str, Any] | None = None
    start_iteration: int = 0
    stop_iteration: int | None = None
    state: TrainState | None = None
    snapshot_iterations: tuple[int, ...] = ()
    name: str = ""

    @property
    def stop(self) -> int:
        return self.config.iterations if self.stop_iteration is None else int(self.stop_iteration)

    @property
    def steps(self) -> int:
        """Optimizer steps in the window."""
        return self.stop - int(self.start_iteration)

    def check(self, k: int) -> None:
        """Refuse a malformed spec (:class:`ConfigError` naming the chain), as :func:`train` refuses its args."""
        label = f"chain {k}" + (f" ({self.name})" if self.name else "")
        if not isinstance(self.config, TrainConfig):
            raise ConfigError(f"{label}: config must be a TrainConfig; got {type(self.config).__name__}")
        self.seed = check_int("seed", self.seed, 0)
        self.start_iteration = check_int("start_iteration", self.start_iteration, 0)
        if self.stop_iteration is not None:
            self.stop_iteration = check_int("stop_iteration", self.stop_iteration, 0)
        total = self.config.iterations
        if not self.start_iteration <= self.stop <= total:
            raise ConfigError(f"{label}: need 0 <= start_iteration <= stop_iteration <= iterations ({total}); "
                              f"got {self.start_iteration} and {self.stop}")
        for it in self.snapshot_iterations:
            if not self.start_iteration <= int(it) <= self.stop:
                raise ConfigError(f"{label}: snapshot iteration {it} lies outside [{self.start_iteration}, "
                                  f"{self.stop}]")
        s = self.state
        if s is not None:
            if not isinstance(s, TrainState):
                raise ConfigError(f"{label}: state must be a TrainState; got {type(s).__name__}")
            if s.iteration != self.start_iteration:
                raise ConfigError(f"{label}: the state was saved at iteration {s.iteration}; start_iteration must "
                                  f"equal it, got {self.start_iteration}")
            if s.seed != self.seed or s.config != self.config.to_dict():
                raise ConfigError(f"{label}: the state was saved by a run with another seed or config; resume "
                                  "with the same ones")


@dataclass
class ChainResult:
    """What one chain of a group hands back.

    Attributes
    ----------
    weights : dict of str to Tensor
        The trained weights (CPU state dict, pruned weights exactly 0).
    result : TrainResult
        As the single-chain :func:`~ticketlab.training.train` returns it: the curve, early-stop iteration, final
        metrics, test predictions and ``state`` (optimizer state in the ``torch.optim`` format, so the chain can
        be continued by either path).
    snapshots : dict of int to state dict
        The weights at each of the spec's ``snapshot_iterations``.
    engine : dict
        How the group was trained (engine, chains, device, precision, CUDA graph, optimizer implementation): for
        the provenance of the files the chain's results go to.
    """

    weights: dict[str, torch.Tensor]
    result: TrainResult
    snapshots: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)
    engine: dict[str, Any] = field(default_factory=dict)

    @property
    def state(self) -> TrainState:
        return self.result.state

    @property
    def curve(self):
        return self.result.curve

    @property
    def iterations(self) -> int:
        """Optimizer steps run by this call."""
        return self.result.iterations

    def to_evaluation(self, num_classes: int | None = None):
        """The test-set :class:`~ticketlab.evaluation.Evaluation` (see :meth:`TrainResult.to_evaluation`)."""
        return self.result.to_evaluation(num_classes)


def group_key(spec: ChainSpec) -> tuple:
    """Chains with equal keys can train in one group: same batch size, number of steps and optimizer settings
    (everything but the learning-rate schedule, which is per chain)."""
    c = spec.config
    return (c.batch_size, spec.steps, c.optimizer, c.momentum, c.nesterov, c.weight_decay, tuple(c.betas), c.eps)


def plan_groups(specs: Sequence[ChainSpec], chains_per_process: int) -> list[list[int]]:
    """Indices of ``specs`` split into groups of compatible chains (:func:`group_key`) of at most
    ``chains_per_process`` each, in order of first appearance; balanced so that groups of one key differ in size by
    at most one."""
    chains_per_process = check_int("chains_per_process", chains_per_process, 1)
    by_key: dict[tuple, list[int]] = {}
    for i, spec in enumerate(specs):
        by_key.setdefault(group_key(spec), []).append(i)
    return [chunk for members in by_key.values() for chunk in balanced_chunks(members, chains_per_process)]


def balanced_chunks(items: Sequence[Any], at_most: int) -> list[list[Any]]:
    """Split ``items`` (in order) into the fewest chunks of at most ``at_most``, their sizes differing by at most
    one: 10 items at most 4 → 4, 3, 3 (not 4, 4, 2), so no group trains much smaller than the others."""
    count = math.ceil(len(items) / at_most)
    if count == 0:
        return []
    size, extra = divmod(len(items), count)
    chunks, start = [], 0
    for g in range(count):
        stop = start + size + (1 if g < extra else 0)
        chunks.append(list(items[start:stop]))
        start = stop
    return chunks


#: Chains per process by default, per device type. CPU: 1 (sequential single chains): on CPU a batched step does
#: the same arithmetic as K single steps (a batched matrix product costs K products) plus a pass to accumulate the
#: gradients into the stacked tensor, and measured 0.6-0.8x the chain-steps/s of single-chain steps for
#: LeNet-300-100 (K = 1, 8, 32) and 0.6x for Conv-4 (K = 16) (benchmarks/bench_batched.py). CUDA: batch; cap K by
#: memory for large models.
DEFAULT_CHAINS_PER_PROCESS = {"cuda": 128, "cpu": 1, "mps": 1}


def default_chains_per_process(device: torch.device | str) -> int:
    """How many chains one process trains together by default on ``device`` (see
    :data:`DEFAULT_CHAINS_PER_PROCESS`)."""
    return DEFAULT_CHAINS_PER_PROCESS.get(torch.device(device).type, 1)
