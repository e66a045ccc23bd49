"""Helpers for the IMP and ``ticketlab train`` tests: tiny synthetic datasets, tiny run configs, a spy on the
training calls IMP makes, and independent computations of the expected kept counts.

Imported by ``tests/test_imp.py``, ``tests/test_cli_train.py`` and by the subprocess script of the
resume-after-SIGKILL test (which puts ``tests/`` on ``sys.path``), so it must not need pytest fixtures.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ticketlab.lottery import IMPRun, RunConfig, RunData
from ticketlab.models import create_model
from ticketlab.training import TrainConfig


def synthetic_data(input_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10, *, n_train: int = 96,
                   n_val: int | None = 24, n_test: int = 40, seed: int = 0, separation: float = 1.0) -> RunData:
    """A small, roughly separable random dataset of any input shape, deterministic in ``seed``.

    Every class ``c`` has a random prototype ``mu_c`` (standard normal, of ``input_shape``); an example of class
    ``c`` is ``separation * mu_c + noise`` with standard-normal noise. Labels are int64; ``n_val=None`` gives no
    validation set.
    """
    g = torch.Generator().manual_seed(10_007 + seed)
    protos = torch.randn((num_classes, *input_shape), generator=g)

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n, dtype=torch.int64) % num_classes
        y = y[torch.randperm(n, generator=g)]
        x = separation * protos[y] + torch.randn((n, *input_shape), generator=g)
        return x.float().contiguous(), y

    train = split(n_train)
    val = split(n_val) if n_val else None
    test = split(n_test)
    return RunData(train, val, test, num_classes, tuple(f"class{i}" for i in range(num_classes)), tuple(input_shape))


def tiny_train(**overrides: Any) -> TrainConfig:
    """A training config of a few iterations (Adam, batch 16, 12 iterations, evaluated every 4)."""
    base = dict(optimizer="adam", lr=2e-3, batch_size=16, iterations=12, eval_every=4)
    base.update(overrides)
    return TrainConfig(**base)


def tiny_config(train: TrainConfig | None = None, **overrides: Any) -> RunConfig:
    """LeNet-300-100 on "mnist" (synthetic data is injected), 2 levels at 20%, tiny training."""
    base: dict[str, Any] = dict(model="lenet300", dataset="mnist", rate=0.2, levels=2)
    base.update(overrides)
    return RunConfig(train=train or tiny_train(), **base)


def run_tiny(path: Path, config: RunConfig, data: RunData | None = None, **run_kwargs: Any) -> Path:
    """Run IMP on CPU without progress bars; ``data`` defaults to :func:`synthetic_data` of the model's shape."""
    if data is None:
        data = synthetic_data()
    return IMPRun(config, path, data=data, device="cpu", progress=False).run(**run_kwargs)


def fresh_model(config: RunConfig, data: RunData, seed: int) -> torch.nn.Module:
    """The registry model of ``config`` initialised under ``torch.manual_seed(seed)`` (what IMP's factory does)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return create_model(config.model, num_classes=data.num_classes, input_shape=data.input_shape)


def as_torch(state: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}


def masked(state: Mapping[str, Any], masks: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A numpy copy of a state dict with the masked entries set to 0."""
    out = {}
    for k, v in state.items():
        arr = v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
        out[k] = np.where(masks[k], arr, np.zeros((), arr.dtype)) if k in masks else arr.copy()
    return out


def expected_layer_kept(sizes: Mapping[str, int], rates: Mapping[str, float], levels: int) -> list[dict[str, int]]:
    """Kept counts per tensor at levels 0..levels for layer-wise pruning at a per-tensor rate.

    Each level prunes ``round(rate * remaining)`` (Python's round, half to even: torch's rule for a float
    ``amount``) of the remaining weights of every tensor; a rate of 0 leaves the tensor alone.
    """
    kept = dict(sizes)
    out = [dict(kept)]
    for _ in range(levels):
        kept = {n: k - int(round(rates.get(n, 0.0) * k)) for n, k in kept.items()}
        out.append(dict(kept))
    return out


@dataclasses.dataclass
class TrainCall:
    """One call of ``ticketlab.training.train`` made by IMP, recorded by :class:`TrainSpy`."""

    start_weights: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]
    start: int
    stop: int
    config: TrainConfig
    end_weights: dict[str, np.ndarray] | None = None
    curve: dict[str, np.ndarray] | None = None


class TrainSpy:
    """Wraps ``ticketlab.lottery.run.train`` (install with ``monkeypatch.setattr(imp, "train", spy)``).

    Records each call's starting weights, masks, window and config, and the weights the call returned. If
    ``interrupt_at`` is an index, that call raises ``KeyboardInterrupt`` after ``interrupt_after`` of its
    iterations (simulating Ctrl-C in the middle of a level).
    """

    def __init__(self, real, interrupt_at: int | None = None, interrupt_after: int = 2):
        self.real = real
        self.calls: list[TrainCall] = []
        self.interrupt_at = interrupt_at
        self.interrupt_after = interrupt_after

    def __call__(self, model, masks, data, config, **kwargs):
        start = kwargs.get("start_iteration", 0)
        stop = kwargs.get("stop_iteration")
        stop = config.iterations if stop is None else stop
        state = {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}
        call = TrainCall(state, {k: np.asarray(v, bool).copy() for k, v in masks.items()}, start, stop, config)
        index = len(self.calls)
        self.calls.append(call)
        if index == self.interrupt_at:
            user_cb = kwargs.get("callback")

            def interrupting(iteration, m):
                if user_cb is not None:
                    user_cb(iteration, m)
                if iteration >= start + self.interrupt_after:
                    raise KeyboardInterrupt

            kwargs["callback"] = interrupting
        result = self.real(model, masks, data, config, **kwargs)
        call.end_weights = {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}
        call.curve = {k: np.asarray(v).copy() for k, v in result.curve.items()}
        return result
