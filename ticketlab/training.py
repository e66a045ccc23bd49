"""Masked training: the training half of iterative magnitude pruning (IMP).

A network is trained with some of its weights *pruned*: a pruned weight is exactly ``0.0`` in every forward pass
and is never updated. :class:`MaskedParameters` keeps that invariant with batched multiplications
(``torch._foreach_mul_``): the gradients after ``loss.backward()``, so that optimizer state (momentum, Adam moments)
stays 0 at pruned positions, and the weights after ``optimizer.step()``. For the registered optimizers a zero
weight with zero gradient and zero state stays exactly zero, so :func:`train` re-zeroes the weights only before
each evaluation and at the end (see ``rezero_every_step``). No forward hooks are involved: the forward pass uses
the stored weights directly. See ``benchmarks/bench_training.py`` for the cost.

Everything that changes along a run is a pure function of the iteration, so that a run can be cut anywhere and
continued exactly, and so that IMP can rewind to iteration ``K`` (Frankle et al. 2020) and replay the rest of the
original run:

- the learning rate, :func:`lr_at`;
- the data order: the batch of iteration ``i`` is slice ``i % S`` of the permutation of epoch ``i // S``
  (``S`` = :func:`steps_per_epoch`), drawn from ``torch.Generator().manual_seed(derive_seed(seed, DATA, epoch))``
  (:func:`epoch_permutation`, :func:`batch_indices`);
- the random stream of a batch augmentation, seeded per iteration.

Terms
-----
iteration
    One optimizer step (one batch). Iterations are counted from 0; "at iteration ``i``" means after ``i`` steps.
epoch
    :func:`steps_per_epoch` consecutive iterations; one pass over ``floor(n_train / batch_size) * batch_size``
    examples (the last incomplete batch of each epoch's permutation is dropped; which examples are dropped changes
    from epoch to epoch).
loss
    Mean cross-entropy in nats.
accuracy
    Fraction of examples whose arg-max logit is the true class.

Bit-exact resume
----------------
``train(..., stop_iteration=K)`` followed by ``train(..., start_iteration=K, state=result.state)`` gives, on CPU,
bit-identical weights (and the same curve) as one uninterrupted ``train`` call, provided that the second call gets

1. the model exactly as the first call left it (all parameters *and buffers*, e.g. batch-norm statistics);
2. ``state`` (:class:`TrainState`: optimizer state such as momentum buffers, Adam moments and step counts; the
   torch RNG state used by dropout; the curve and the running train-loss window);
3. the same ``masks``, ``data`` (same tensors, same order), ``config``, ``seed`` and ``augment`` function;
4. the same torch build, device and number of threads (``torch.get_num_threads()``); matrix-multiply kernels
   may split reductions differently with another thread count.

On GPUs the same holds only with deterministic kernels (``torch.use_deterministic_algorithms(True)``).
Without ``state`` the call starts a fresh optimizer (zero momentum), which is what weight rewinding does.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from bisect import bisect_right
import dataclasses
from dataclasses import asdict, dataclass, field, fields
from numbers import Integral, Real
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ticketlab.errors import ConfigError
from ticketlab.masks import as_bool_mask

__all__ = [
    "TrainConfig",
    "TrainResult",
    "TrainState",
    "MaskedParameters",
    "apply_masks",
    "train",
    "evaluate",
    "lr_at",
    "iterations_from_epochs",
    "steps_per_epoch",
    "epoch_permutation",
    "batch_indices",
    "derive_seed",
    "make_optimizer",
    "unwrap_model",
    "register_optimizer",
    "get_optimizer",
    "list_optimizers",
    "register_schedule",
    "get_schedule",
    "list_schedules",
    "CURVE_COLUMNS",
]

#: Columns of a training curve, in order. ``iteration`` is int64, the rest float64 (losses in nats, accuracies
#: as fractions, ``nan`` where the set was not given or, for ``train_loss``, where no step preceded the evaluation).
CURVE_COLUMNS = ("iteration", "train_loss", "val_loss", "val_accuracy", "test_loss", "test_accuracy", "lr")

# Stream tags for derive_seed: the data order and the augmentation never share a random stream with each other
# or with the model's own randomness (dropout), even for equal seeds.
_DATA_STREAM = 0x64617461  # "data"
_AUGMENT_STREAM = 0x61756700  # "aug"
_MODEL_RNG_STREAM = 0x726E6700  # "rng"


# --------------------------------------------------------------------------------------------------------------
# Registries: optimizers and learning-rate schedules
# --------------------------------------------------------------------------------------------------------------

#: name -> builder ``(params, config, fused) -> torch.optim.Optimizer``. A builder whose attribute ``keeps_zeros`` is
#: true declares that its optimizer leaves a weight at exactly 0 when the weight, its gradient and its optimizer
#: state are 0 (true of every coordinate-wise method: SGD, momentum, Nesterov, L2 or decoupled weight decay, Adam).
OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {}
#: name -> decay factor ``(config, iteration) -> float`` (the warm-up factor is applied on top by :func:`lr_at`).
SCHEDULES: dict[str, Callable[["TrainConfig", int], float]] = {}


def register_optimizer(name: str, keeps_zeros: bool = False):
    """Decorator adding an optimizer builder ``(params, config, fused) -> Optimizer`` under ``name``.

    ``keeps_zeros=True`` declares that a step leaves ``w = 0`` unchanged when ``w``, its gradient and its state
    are 0 (see :data:`OPTIMIZERS`); :func:`train` then skips the per-step re-zeroing of pruned weights, which is
    redundant once gradients are masked. Leave it false when in doubt: pruned weights are then re-zeroed after
    every step.
    """

    def deco(fn):
        fn.keeps_zeros = bool(keeps_zeros)
        OPTIMIZERS[name] = fn
        return fn

    return deco


def register_schedule(name: str):
    """Decorator adding a learning-rate decay ``(config, iteration) -> factor`` under ``name``."""

    def deco(fn):
        SCHEDULES[name] = fn
        return fn

    return deco


def list_optimizers() -> list[str]:
    """Names of the registered optimizers, sorted."""
    return sorted(OPTIMIZERS)


def list_schedules() -> list[str]:
    """Names of the registered learning-rate schedules, sorted."""
    return sorted(SCHEDULES)


def get_optimizer(name: str) -> Callable[..., torch.optim.Optimizer]:
    """The builder registered as ``name``; :class:`ConfigError` listing the valid names otherwise."""
    try:
        return OPTIMIZERS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown optimizer {name!r}; choose one of: {', '.join(list_optimizers())}") from None


def get_schedule(name: str) -> Callable[["TrainConfig", int], float]:
    """The schedule registered as ``name``; :class:`ConfigError` listing the valid names otherwise."""
    try:
        return SCHEDULES[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown schedule {name!r}; choose one of: {', '.join(list_schedules())}") from None


@register_optimizer("sgd", keeps_zeros=True)
def _build_sgd(params, config: "TrainConfig", fused: bool) -> torch.optim.Optimizer:
    """SGD with optional (Nesterov) momentum and L2 weight decay added to the gradient."""
    return torch.optim.SGD(
        params,
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov,
        weight_decay=config.weight_decay,
        fused=fused or None,
    )


@register_optimizer("adam", keeps_zeros=True)
def _build_adam(params, config: "TrainConfig", fused: bool) -> torch.optim.Optimizer:
    """Adam (Kingma & Ba) with L2 weight decay added to the gradient (coupled), as in ``torch.optim.Adam``."""
    return torch.optim.Adam(
        params, lr=config.lr, betas=config.betas, eps=config.eps, weight_decay=config.weight_decay, fused=fused or None
    )


@register_optimizer("adamw", keeps_zeros=True)
def _build_adamw(params, config: "TrainConfig", fused: bool) -> torch.optim.Optimizer:
    """AdamW (Loshchilov & Hutter): Adam with decoupled weight decay ``w -= lr * weight_decay * w``."""
    return torch.optim.AdamW(
        params, lr=config.lr, betas=config.betas, eps=config.eps, weight_decay=config.weight_decay, fused=fused or None
    )


@register_schedule("constant")
def _constant(config: "TrainConfig", iteration: int) -> float:
    """Factor 1 throughout."""
    return 1.0


@register_schedule("step")
def _step(config: "TrainConfig", iteration: int) -> float:
    """``gamma ** k`` where ``k`` = number of milestones ``<= iteration`` (``torch.optim.lr_scheduler.MultiStepLR``
    stepped once per iteration)."""
    return config.gamma ** bisect_right(config.milestones, iteration)


@register_schedule("cosine")
def _cosine(config: "TrainConfig", iteration: int) -> float:
    """``(1 + cos(pi * i / T)) / 2`` with ``T = config.iterations``, ``i`` clamped to ``[0, T]``: 1 at iteration 0,
    0 at ``T`` (``torch.optim.lr_scheduler.CosineAnnealingLR`` with ``T_max=T``, ``eta_min=0``)."""
    t = min(iteration, config.iterations) / config.iterations
    return 0.5 * (1.0 + math.cos(math.pi * t))


# --------------------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------------------


def _int(name: str, value: Any, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (Integral, Real)) or (
        isinstance(value, Real) and not float(value).is_integer()
    ):
        raise ConfigError(f"{name} must be an integer; got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}; got {value}")
    return value


def _float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)):
        raise ConfigError(f"{name} must be a finite number; got {value!r}")
    return float(value)


@dataclass(frozen=True)
class TrainConfig:
    """How to train one network. Immutable; validated on construction (:class:`ConfigError`).

    The defaults are Frankle & Carbin (2019)'s LeNet-300-100 setting (Adam, lr 1.2e-3, batch 60, 50,000
    iterations) with evaluation only at the end.

    Attributes
    ----------
    optimizer : str
        Registered optimizer: ``"sgd"``, ``"adam"`` or ``"adamw"`` (:func:`list_optimizers`).
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
        Registered learning-rate decay: ``"constant"``, ``"step"`` or ``"cosine"`` (:func:`list_schedules`).
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

        get_optimizer(self.optimizer)
        get_schedule(self.schedule)
        put("lr", _float("lr", self.lr))
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0; got {self.lr:g}")
        put("momentum", _float("momentum", self.momentum))
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"momentum must be in [0, 1); got {self.momentum:g}")
        if not isinstance(self.nesterov, (bool, np.bool_)):
            raise ConfigError(f"nesterov must be true or false; got {self.nesterov!r}")
        put("nesterov", bool(self.nesterov))
        put("weight_decay", _float("weight_decay", self.weight_decay))
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0; got {self.weight_decay:g}")
        try:
            betas = tuple(self.betas)
        except TypeError:
            betas = ()
        if len(betas) != 2:
            raise ConfigError(f"betas must be two numbers (beta1, beta2); got {self.betas!r}")
        betas = tuple(_float("betas", b) for b in betas)
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ConfigError(f"betas must each be in [0, 1); got {betas}")
        put("betas", betas)
        put("eps", _float("eps", self.eps))
        if self.eps <= 0:
            raise ConfigError(f"eps must be > 0; got {self.eps:g}")
        if self.optimizer != "sgd":
            if self.momentum != 0:
                raise ConfigError(
                    f"momentum is used only by the sgd optimizer; got momentum={self.momentum:g} with "
                    f"{self.optimizer!r} (set betas instead)"
                )
            if self.nesterov:
                raise ConfigError(f"nesterov is used only by the sgd optimizer; got it with {self.optimizer!r}")
        elif self.nesterov and self.momentum == 0:
            raise ConfigError("nesterov needs momentum > 0; got momentum=0")
        put("iterations", _int("iterations", self.iterations, 1))
        put("batch_size", _int("batch_size", self.batch_size, 1))
        put("eval_every", _int("eval_every", self.eval_every, 0))
        put("warmup_iterations", _int("warmup_iterations", self.warmup_iterations, 0))
        if self.warmup_iterations > self.iterations:
            raise ConfigError(
                f"warmup_iterations must be <= iterations ({self.iterations}); got {self.warmup_iterations}"
            )
        put("gamma", _float("gamma", self.gamma))
        if not 0.0 < self.gamma <= 1.0:
            raise ConfigError(f"gamma must be in (0, 1]; got {self.gamma:g}")
        if isinstance(self.milestones, (str, bytes)):
            raise ConfigError(f"milestones must be a list of iterations; got {self.milestones!r}")
        try:
            milestones = tuple(_int("milestones", m) for m in self.milestones)
        except TypeError:
            raise ConfigError(f"milestones must be a list of iterations; got {self.milestones!r}") from None
        put("milestones", milestones)
        if self.schedule == "step":
            if not milestones:
                raise ConfigError("the step schedule needs milestones (iterations at which the lr drops); got none")
            if any(b <= a for a, b in zip(milestones, milestones[1:])):
                raise ConfigError(f"milestones must be strictly increasing; got {list(milestones)}")
            if milestones[0] <= 0 or milestones[-1] >= self.iterations:
                raise ConfigError(
                    f"milestones must lie in (0, iterations={self.iterations}) and are counted in iterations, "
                    f"not epochs; got {list(milestones)}"
                )
        elif milestones:
            raise ConfigError(f"milestones are used only by the step schedule; got them with {self.schedule!r}")

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


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Optimizer steps in one epoch: ``floor(n_train / batch_size)`` (the incomplete last batch is dropped).

    Every batch therefore holds exactly ``batch_size`` examples.
    """
    n_train = _int("n_train", n_train, 0)
    batch_size = _int("batch_size", batch_size, 1)
    if n_train < batch_size:
        raise ConfigError(
            f"the training set ({n_train} examples) is smaller than one batch ({batch_size}); lower batch_size"
        )
    return n_train // batch_size


def iterations_from_epochs(epochs: float, n_train: int, batch_size: int) -> int:
    """Number of iterations in ``epochs`` epochs: ``round(epochs * floor(n_train / batch_size))``.

    ``epochs`` may be fractional (e.g. ``0.5``); the result is rounded to the nearest iteration.
    """
    epochs = _float("epochs", epochs)
    if epochs < 0:
        raise ConfigError(f"epochs must be >= 0; got {epochs:g}")
    return int(round(epochs * steps_per_epoch(n_train, batch_size)))


def lr_at(config: TrainConfig, iteration: int) -> float:
    """Learning rate of the step taken at ``iteration`` (after ``iteration`` steps), as a pure function.

    ``lr = config.lr * warmup(i) * decay(i)`` with ``warmup(i) = min(1, i / warmup_iterations)`` (1 without
    warm-up) and ``decay`` the registered schedule (``constant``: 1; ``step``: ``gamma ** #{milestones <= i}``;
    ``cosine``: ``(1 + cos(pi * min(i, T) / T)) / 2``). Both factors use absolute iterations, so warm-up and decay
    overlap rather than run one after the other.
    """
    return _lr(config, get_schedule(config.schedule), _int("iteration", iteration, 0))


def _lr(config: TrainConfig, schedule: Callable[[TrainConfig, int], float], iteration: int) -> float:
    factor = schedule(config, iteration)
    if config.warmup_iterations and iteration < config.warmup_iterations:
        factor *= iteration / config.warmup_iterations
    return config.lr * factor


# --------------------------------------------------------------------------------------------------------------
# Data order
# --------------------------------------------------------------------------------------------------------------


def derive_seed(seed: int, *keys: int) -> int:
    """A 63-bit seed derived from ``seed`` and ``keys`` (non-negative ints) by ``numpy.random.SeedSequence``.

    Distinct key tuples give independent streams; the value depends only on the arguments.
    """
    seed = _int("seed", seed, 0)
    state = np.random.SeedSequence((seed, *[int(k) for k in keys])).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def epoch_permutation(seed: int, epoch: int, n: int) -> torch.Tensor:
    """Order of the ``n`` training examples in ``epoch``: ``torch.randperm(n)`` drawn from
    ``torch.Generator().manual_seed(derive_seed(seed, DATA, epoch))``; int64 tensor of shape ``(n,)`` on CPU."""
    generator = torch.Generator().manual_seed(derive_seed(seed, _DATA_STREAM, _int("epoch", epoch, 0)))
    return torch.randperm(n, generator=generator)


def batch_indices(seed: int, iteration: int, n_train: int, batch_size: int) -> torch.Tensor:
    """Indices of the training examples in the batch of ``iteration``; int64 tensor of shape ``(batch_size,)``.

    Slice ``iteration % S`` (of length ``batch_size``) of :func:`epoch_permutation` of epoch ``iteration // S``,
    ``S = steps_per_epoch(n_train, batch_size)``.
    """
    spe = steps_per_epoch(n_train, batch_size)
    epoch, pos = divmod(_int("iteration", iteration, 0), spe)
    return epoch_permutation(seed, epoch, n_train)[pos * batch_size : (pos + 1) * batch_size]


# --------------------------------------------------------------------------------------------------------------
# Masks
# --------------------------------------------------------------------------------------------------------------


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module whose parameter names are canonical: unwraps ``DistributedDataParallel``/``DataParallel``
    (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers, however nested."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model


class MaskedParameters:
    """Keeps the pruned weights of a model at exactly zero during training.

    Holds, for each masked parameter, its mask as a tensor of the parameter's dtype on the parameter's device
    (1 = kept, 0 = pruned). Construction zeroes the pruned weights. In the training step call
    :meth:`mask_gradients` after ``loss.backward()`` (so that the optimizer state — momentum, Adam moments — stays 0
    at pruned positions) and :meth:`mask_weights` after ``optimizer.step()``. Each is one ``torch._foreach_mul_``
    over the parameters that have at least one pruned weight; parameters whose mask is all ones are skipped.

    With masked gradients, SGD (with momentum, Nesterov, L2 weight decay), Adam and AdamW already leave a zero
    weight at zero, so :meth:`mask_weights` is a guard that costs one pass over the weights.

    Parameters
    ----------
    model : nn.Module
        The network, possibly wrapped in ``DistributedDataParallel``/``DataParallel``/``torch.compile``; masks are
        matched against the canonical names of :func:`unwrap_model`.
    masks : mapping of str to array-like of bool/0-1, or None
        Mask per canonical parameter name, of the parameter's shape; ``True``/1 = kept. ``None`` or ``{}``: dense.
    param_names : iterable of str, optional
        Apply only the masks of these names (all of ``masks`` by default).
    """

    def __init__(
        self, model: nn.Module, masks: Mapping[str, Any] | None, param_names: Iterable[str] | None = None
    ) -> None:
        masks = dict(masks or {})
        names = list(masks) if param_names is None else list(param_names)
        params = dict(unwrap_model(model).named_parameters())
        self.names: list[str] = []
        self.masks: dict[str, torch.Tensor] = {}
        self._params: list[torch.Tensor] = []
        self._factors: list[torch.Tensor] = []
        for name in names:
            if name not in masks:
                raise ConfigError(f"param_names names {name!r} but no mask is given for it")
            if name not in params:
                raise ConfigError(
                    f"mask names a parameter the model does not have: {name!r}; the model's parameters are: "
                    + ", ".join(params)
                )
            p = params[name]
            value = masks[name]
            if isinstance(value, torch.Tensor):
                value = value.detach().cpu().numpy()
            keep = as_bool_mask(name, value, tuple(p.shape))
            self.names.append(name)
            self.masks[name] = torch.as_tensor(keep, device=p.device)
            if not keep.all():
                self._params.append(p)
                self._factors.append(torch.as_tensor(keep, dtype=p.dtype, device=p.device))
        self.mask_weights()

    @property
    def pruned_parameters(self) -> list[str]:
        """Names of the masked parameters that have at least one pruned weight."""
        return [n for n in self.names if not bool(self.masks[n].all())]

    @torch.no_grad()
    def mask_weights(self) -> None:
        """Set every pruned weight to 0 (in place)."""
        if self._params:
            torch._foreach_mul_(self._params, self._factors)

    def mask_gradients(self) -> None:
        """Set the gradient of every pruned weight to 0 (in place); parameters without a gradient are skipped.

        Gradients are plain tensors, so no ``no_grad`` context is needed (entering one costs ~1 µs per call).
        """
        if not self._params:
            return
        grads = [p.grad for p in self._params]
        if any(g is None for g in grads):
            pairs = [(g, m) for g, m in zip(grads, self._factors) if g is not None]
            if not pairs:
                return
            grads, factors = [g for g, _ in pairs], [m for _, m in pairs]
        else:
            factors = self._factors
        torch._foreach_mul_(grads, factors)

    @torch.no_grad()
    def mask_optimizer_state(self, optimizer: torch.optim.Optimizer) -> None:
        """Zero, at pruned positions, every optimizer-state tensor shaped like its parameter (momentum buffers,
        Adam moments). Needed only when an optimizer state from elsewhere is loaded."""
        for p, m in zip(self._params, self._factors):
            for value in optimizer.state.get(p, {}).values():
                if isinstance(value, torch.Tensor) and value.shape == p.shape:
                    value.mul_(m.to(value.dtype))

    @torch.no_grad()
    def count_pruned_nonzero(self) -> int:
        """Number of pruned weights that are not exactly 0 (0 when the invariant holds)."""
        return int(sum(int(torch.count_nonzero(p * (1 - m))) for p, m in zip(self._params, self._factors)))


def apply_masks(
    model: nn.Module, masks: Mapping[str, Any] | None, param_names: Iterable[str] | None = None
) -> MaskedParameters:
    """Zero the pruned weights of ``model`` and return the :class:`MaskedParameters` that keeps them zero."""
    return MaskedParameters(model, masks, param_names)


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer of ``config`` over ``model.parameters()`` that require gradients.

    Uses the fused implementation where torch has one for every parameter's device (CPU and CUDA): on CPU it is
    ~2x (SGD) to ~5x (Adam) faster than the default per-tensor loop.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("the model has no trainable parameters")
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    return get_optimizer(config.optimizer)(params, config, fused)


# --------------------------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------------------------


def _evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int, device: torch.device
) -> tuple[float, np.ndarray, int]:
    """:func:`evaluate`, also returning the number of classes (width of the logits)."""
    n = len(x)
    if n == 0:
        raise ConfigError("cannot evaluate on an empty set")
    if len(y) != n:
        raise ConfigError(f"inputs and labels differ in length: {n} and {len(y)}")
    batch_size = _int("batch_size", batch_size, 1)
    was_training = model.training
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=device)
    predictions = []
    num_classes = 0
    try:
        with torch.inference_mode():
            for start in range(0, n, batch_size):
                xb = x[start : start + batch_size].to(device, non_blocking=True)
                yb = y[start : start + batch_size].to(device, non_blocking=True)
                logits = model(xb)
                num_classes = int(logits.shape[-1])
                total += F.cross_entropy(logits, yb, reduction="sum").double()
                predictions.append(logits.argmax(dim=-1))
    finally:
        model.train(was_training)
    preds = torch.cat(predictions).to("cpu", torch.int64).numpy()
    return float(total) / n, preds, num_classes


def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000, device: Any = None
) -> tuple[float, np.ndarray]:
    """Mean cross-entropy and predicted classes of ``model`` on ``(x, y)``.

    Runs in eval mode (dropout off, batch-norm running statistics) under ``torch.inference_mode()`` and restores
    the model's previous mode.

    Parameters
    ----------
    model : nn.Module
        Maps a batch ``(B, ...)`` to logits ``(B, C)``.
    x : Tensor of shape (N, ...)
    y : Tensor of shape (N,), int64
        True classes in ``[0, C)``.
    batch_size : int
        Examples per forward pass.
    device : torch.device or str, optional
        Where to run; default: the device of the model's first parameter.

    Returns
    -------
    loss : float
        Mean cross-entropy over the N examples, in nats.
    predictions : ndarray of shape (N,), int64
        Arg-max class of each example.
    """
    device = _model_device(model) if device is None else torch.device(device)
    loss, preds, _ = _evaluate(model, x, y, batch_size, device)
    return loss, preds


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


# --------------------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------------------


@dataclass
class TrainState:
    """What an interrupted :func:`train` call needs to continue exactly (see the module docstring).

    Attributes
    ----------
    iteration : int
        Iterations (optimizer steps) completed; the next call must start here.
    seed : int
        The ``seed`` of the run.
    config : dict
        ``TrainConfig.to_dict()`` of the run.
    optimizer : dict
        ``optimizer.state_dict()`` (momentum buffers, Adam moments and step counts, hyper-parameters).
    rng : dict of str to Tensor
        Torch RNG states used by the model's own randomness (dropout): ``"cpu"``, and ``"cuda"`` on a GPU.
    curve : dict of str to list
        The scheduled evaluations so far (columns :data:`CURVE_COLUMNS`).
    window_loss_sum : float
        Sum of the per-step training losses (nats) since the last scheduled evaluation.
    window_steps : int
        Number of steps in that sum.
    run_start : int
        ``start_iteration`` of the run's first call (0, or ``K`` for a network retrained from a rewind point).
    wall_time : float
        Seconds spent in all the run's calls so far.
    """

    iteration: int
    seed: int
    config: dict
    optimizer: dict
    rng: dict
    curve: dict
    window_loss_sum: float = 0.0
    window_steps: int = 0
    run_start: int = 0
    wall_time: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (tensors included) for ``torch.save``."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrainState":
        """Inverse of :meth:`to_dict`."""
        required = [f.name for f in fields(cls) if f.default is dataclasses.MISSING]
        missing = [n for n in required if n not in d]
        if missing:
            raise ConfigError(f"training state lacks {', '.join(missing)}; was it written by TrainState.to_dict?")
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})


@dataclass
class TrainResult:
    """Outcome of one :func:`train` call.

    Attributes
    ----------
    curve : dict of str to 1-D ndarray
        Columns :data:`CURVE_COLUMNS`, one row per evaluation: at every multiple of ``eval_every``, at
        ``config.iterations`` and at the call's ``stop_iteration``; for a resumed call the rows of the earlier
        call(s) come first. ``train_loss`` is the mean training loss over the steps since the previous scheduled
        evaluation (nats); ``lr`` is :func:`lr_at` of the row's iteration.
    early_stop_iteration : int or None
        Iteration of the minimum validation loss in ``curve`` (first one on ties); ``None`` without validation set.
    start_iteration, stop_iteration : int
        The iterations ``[start, stop)`` run by this call.
    run_start_iteration : int
        ``start_iteration`` of the run's first call (differs from ``start_iteration`` after a resume).
    val_loss, val_accuracy, test_loss, test_accuracy : float
        At ``stop_iteration`` (nats, fractions); ``nan`` for a set not given.
    test_predictions : ndarray of shape (N_test,), int64, or None
        Predicted class of every test example at ``stop_iteration``.
    test_targets : ndarray of shape (N_test,), int64, or None
        The test labels, for :meth:`to_evaluation`.
    num_classes : int
        Width of the model's output (0 when nothing was evaluated).
    wall_time : float
        Seconds spent in this call, training and evaluation.
    state : TrainState
        Pass to the next call (``state=``) to continue exactly.
    """

    curve: dict[str, np.ndarray]
    early_stop_iteration: int | None
    start_iteration: int
    stop_iteration: int
    run_start_iteration: int = 0
    val_loss: float = math.nan
    val_accuracy: float = math.nan
    test_loss: float = math.nan
    test_accuracy: float = math.nan
    test_predictions: np.ndarray | None = None
    test_targets: np.ndarray | None = None
    num_classes: int = 0
    wall_time: float = 0.0
    state: TrainState | None = field(default=None, repr=False)

    @property
    def iterations(self) -> int:
        """Optimizer steps run by this call."""
        return self.stop_iteration - self.start_iteration

    def to_evaluation(self, num_classes: int | None = None):
        """The :class:`ticketlab.evaluation.Evaluation` of the test set at ``stop_iteration``.

        Its ``iterations`` is ``stop_iteration``, the position in the schedule the network reached (for a network
        retrained from rewind point ``K`` this includes the ``K`` steps of the run it was rewound into; the steps
        of this run alone are ``stop_iteration - run_start_iteration``), and its ``wall_time`` the seconds of all
        the run's calls.
        """
        from ticketlab.evaluation import Evaluation

        if self.test_predictions is None:
            raise ConfigError("no test set was evaluated; pass test=(x, y) to train()")
        return Evaluation.from_predictions(
            self.test_targets,
            self.test_predictions,
            self.test_loss,
            num_classes or self.num_classes,
            curve=self.curve,
            early_stop_iteration=self.early_stop_iteration,
            iterations=self.stop_iteration,
            wall_time=self.state.wall_time if self.state is not None else self.wall_time,
        )


def _check_xy(what: str, pair: Any) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        x, y = pair
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a pair of tensors (x, y)") from None
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise ConfigError(f"{what} must be a pair of tensors (x, y); got {type(x).__name__}, {type(y).__name__}")
    if len(x) != len(y):
        raise ConfigError(f"{what}: inputs and labels differ in length: {len(x)} and {len(y)}")
    if y.dtype != torch.int64:
        raise ConfigError(f"{what}: labels must be int64 class indices; got {y.dtype}")
    return x, y


def _distributed() -> tuple[int, int]:
    """(rank, world size) of the initialised process group, or (0, 1)."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _derive_generator(seed: int, stream: int, index: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(derive_seed(seed, stream, index))


def train(
    model: nn.Module,
    masks: Mapping[str, Any] | None,
    data: tuple[torch.Tensor, torch.Tensor],
    config: TrainConfig,
    *,
    start_iteration: int = 0,
    stop_iteration: int | None = None,
    seed: int,
    device: Any = None,
    val: tuple[torch.Tensor, torch.Tensor] | None = None,
    test: tuple[torch.Tensor, torch.Tensor] | None = None,
    callback: Callable[[int, nn.Module], Any] | None = None,
    progress: bool | None = None,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    state: TrainState | None = None,
    eval_batch_size: int = 1000,
    rezero_every_step: bool | None = None,
    desc: str = "train",
) -> TrainResult:
    """Train ``model`` in place for iterations ``[start_iteration, stop_iteration)`` with pruned weights held at 0.

    Parameters
    ----------
    model : nn.Module
        Maps ``x`` batches to logits ``(B, C)``; may be wrapped in ``DistributedDataParallel``. Trained in place;
        its train/eval mode is restored at the end.
    masks : mapping of str to bool array, or None
        Mask per canonical parameter name (``True`` = kept); pruned weights are zeroed at the start and stay 0.
    data : (Tensor (N, ...), Tensor (N,) int64)
        The training set (without the validation examples), held in memory; moved to ``device`` once.
    config : TrainConfig
    start_iteration : int
        First iteration to run (``K`` to continue a run or replay it from a rewind point). The learning rate and
        the data order are those an uninterrupted run would use at these iterations.
    stop_iteration : int, optional
        One past the last iteration to run; default ``config.iterations``.
    seed : int
        Seeds the data order, the augmentation and (without ``state``) the torch RNG used by dropout.
    device : torch.device or str, optional
        Default: the device of the model's first parameter.
    val, test : (Tensor, Tensor), optional
        Validation and test sets, evaluated on the curve's grid and at the end.
    callback : callable(iteration, model), optional
        Called before the step of every iteration in ``[start, stop)``, i.e. with the weights after ``iteration``
        steps (IMP snapshots the rewind point ``K`` here).
    progress : bool or None
        ``None`` (default): a tqdm bar on stderr when stderr is a terminal; ``True``: always; ``False``: never.
    augment : callable(x, generator) -> x, optional
        Batch augmentation; ``generator`` is a ``torch.Generator`` on ``device`` seeded from ``(seed, iteration)``.
    state : TrainState, optional
        ``result.state`` of the call that stopped at ``start_iteration``, to continue bit-exactly (optimizer
        state, RNG state, curve). Without it the optimizer starts fresh.
    eval_batch_size : int
        Examples per forward pass in evaluations.
    rezero_every_step : bool or None
        Re-zero the pruned weights after every ``optimizer.step()``. ``None`` (default): only for optimizers not
        registered with ``keeps_zeros=True``. For the others (sgd, adam, adamw) masking the gradients already keeps
        pruned weights and their optimizer state at exactly 0 (the tests check this bit for bit), so the weights
        are re-zeroed only before every evaluation and at the end, saving one pass over the weights per step
        (~3 % of a LeNet-300-100 step on CPU).
    desc : str
        Label of the progress bar (the IMP loop passes e.g. ``"level 3"``).

    Distributed training: when a ``torch.distributed`` process group of W > 1 processes is initialised (e.g. by
    ``torchrun``) and ``model`` is wrapped in ``DistributedDataParallel``, every process draws the same global
    batch of ``batch_size`` examples and trains on its share ``batch[rank::W]``; DDP averages the gradients, so a
    step equals the single-process step on the whole batch up to floating-point order. ``batch_size`` must be a
    multiple of W. The training loss in the curve is averaged over the processes.

    Returns
    -------
    TrainResult
    """
    t0 = time.perf_counter()
    if not isinstance(config, TrainConfig):
        raise ConfigError(f"config must be a TrainConfig; got {type(config).__name__}")
    seed = _int("seed", seed, 0)
    total = config.iterations
    start = _int("start_iteration", start_iteration, 0)
    stop = total if stop_iteration is None else _int("stop_iteration", stop_iteration, 0)
    if not start <= stop <= total:
        raise ConfigError(
            f"need 0 <= start_iteration <= stop_iteration <= iterations ({total}); got {start} and {stop}"
        )
    rank, world = _distributed()
    if world > 1 and config.batch_size % world:
        raise ConfigError(f"batch_size ({config.batch_size}) must be a multiple of the number of processes ({world})")
    x, y = _check_xy("data", data)
    val = None if val is None else _check_xy("val", val)
    test = None if test is None else _check_xy("test", test)
    device = _model_device(model) if device is None else torch.device(device)
    n, bs = len(x), config.batch_size
    spe = steps_per_epoch(n, bs)
    if state is not None:
        if not isinstance(state, TrainState):
            raise ConfigError(f"state must be a TrainState; got {type(state).__name__}")
        if state.iteration != start:
            raise ConfigError(
                f"the state was saved at iteration {state.iteration}; start_iteration must equal it, got {start}"
            )
        if state.seed != seed or state.config != config.to_dict():
            raise ConfigError("the state was saved by a run with another seed or config; resume with the same ones")

    x, y = x.to(device), y.to(device)
    masked = MaskedParameters(model, masks)
    optimizer = make_optimizer(model, config)
    if rezero_every_step is None:
        rezero_every_step = not getattr(get_optimizer(config.optimizer), "keeps_zeros", False)
    mask_weights = masked.mask_weights if rezero_every_step and masked.pruned_parameters else None
    if state is not None:
        optimizer.load_state_dict(copy.deepcopy(state.optimizer))
    param_groups = optimizer.param_groups
    schedule = get_schedule(config.schedule)
    group_lr = None

    curve: dict[str, list] = {c: [] for c in CURVE_COLUMNS}
    if state is not None:
        curve = {c: list(state.curve[c]) for c in CURVE_COLUMNS}
    acc_dtype = torch.float32 if device.type == "mps" else torch.float64
    window_sum = torch.zeros((), dtype=acc_dtype, device=device)
    window_steps = 0
    if state is not None:
        window_sum.fill_(state.window_loss_sum)
        window_steps = int(state.window_steps)
    run_start = start if state is None else int(state.run_start)
    result = TrainResult(
        curve={}, early_stop_iteration=None, start_iteration=start, stop_iteration=stop, run_start_iteration=run_start
    )
    if test is not None:
        result.test_targets = test[1].cpu().numpy().astype(np.int64)

    def run_eval(iteration: int) -> dict[str, float]:
        masked.mask_weights()
        row = {"iteration": iteration, "lr": lr_at(config, iteration)}
        if world > 1:  # the mean over all processes' shares of the batches
            total_loss = window_sum.clone()
            torch.distributed.all_reduce(total_loss)
            row["train_loss"] = float(total_loss) / (world * window_steps) if window_steps else math.nan
        else:
            row["train_loss"] = float(window_sum) / window_steps if window_steps else math.nan
        for name, pair in (("val", val), ("test", test)):
            if pair is None:
                row[f"{name}_loss"] = row[f"{name}_accuracy"] = math.nan
                continue
            loss, preds, result.num_classes = _evaluate(model, pair[0], pair[1], eval_batch_size, device)
            row[f"{name}_loss"] = loss
            row[f"{name}_accuracy"] = float(np.mean(preds == pair[1].cpu().numpy())) if len(preds) else math.nan
            if name == "test":
                result.test_predictions = preds
        return row

    def scheduled(iteration: int) -> bool:
        return iteration == total or (config.eval_every > 0 and iteration % config.eval_every == 0)

    bar = None
    if progress is not False:
        from tqdm import tqdm

        # counts absolute iterations; the postfix shows the last evaluation
        bar = tqdm(
            total=stop, initial=start, desc=desc, unit="it", file=sys.stderr,
            disable=None if progress is None else False, dynamic_ncols=True, leave=False,
        )
    last_row: dict[str, float] | None = None
    off_grid: dict[str, list] = {c: [] for c in CURVE_COLUMNS}

    def record(row: dict[str, float], keep: bool) -> None:
        nonlocal last_row
        last_row = row
        target = curve if keep else off_grid
        for c in CURVE_COLUMNS:
            target[c].append(row[c])
        if bar is not None:
            which = "val" if val is not None else "test"
            bar.set_postfix(
                {"epoch": f"{row['iteration'] / spe:.1f}", "train_loss": f"{row['train_loss']:.4f}",
                 f"{which}_acc": f"{row[which + '_accuracy']:.4f}"},
                refresh=False,
            )

    was_training = model.training
    devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            if state is not None:
                torch.set_rng_state(state.rng["cpu"])
                if device.type == "cuda" and "cuda" in state.rng:
                    torch.cuda.set_rng_state(state.rng["cuda"], device)
            else:
                rng_seed = derive_seed(seed, _MODEL_RNG_STREAM, start)
                torch.random.default_generator.manual_seed(rng_seed)
                if device.type == "cuda":
                    index = device.index if device.index is not None else torch.cuda.current_device()
                    torch.cuda.default_generators[index].manual_seed(rng_seed)

            if scheduled(start) and not (curve["iteration"] and curve["iteration"][-1] == start):
                record(run_eval(start), keep=True)

            model.train()
            epoch, perm = -1, None
            for it in range(start, stop):  # the hot loop: keep it free of per-step Python work and host syncs
                if callback is not None:
                    callback(it, model)
                e, pos = divmod(it, spe)
                if e != epoch:
                    epoch, perm = e, epoch_permutation(seed, e, n).to(device)
                idx = perm[pos * bs : pos * bs + bs]
                if world > 1:
                    idx = idx[rank::world]
                xb, yb = x.index_select(0, idx), y.index_select(0, idx)
                if augment is not None:
                    xb = augment(xb, _derive_generator(seed, _AUGMENT_STREAM, it, device))
                lr = _lr(config, schedule, it)
                if lr != group_lr:
                    for group in param_groups:
                        group["lr"] = group_lr = lr
                loss = F.cross_entropy(model(xb), yb)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                masked.mask_gradients()
                optimizer.step()
                if mask_weights is not None:
                    mask_weights()
                window_sum += loss.detach()
                window_steps += 1
                if scheduled(it + 1):
                    record(run_eval(it + 1), keep=True)  # evaluation restores train mode
                    window_sum.zero_()
                    window_steps = 0
                if bar is not None:
                    bar.update(1)

            if last_row is None or last_row["iteration"] != stop:
                row = run_eval(stop)
                if curve["iteration"] and curve["iteration"][-1] == stop:
                    last_row = row  # resumed at the very end: the row is already in the curve
                else:
                    record(row, keep=False)  # the end of an interrupted run: reported, not carried on
            rng = {"cpu": torch.get_rng_state()}
            if device.type == "cuda":
                rng["cuda"] = torch.cuda.get_rng_state(device)
    finally:
        model.train(was_training)
        if bar is not None:
            bar.close()

    result.state = TrainState(
        iteration=stop,
        seed=seed,
        config=config.to_dict(),
        optimizer=optimizer.state_dict(),
        rng=rng,
        curve={c: list(v) for c, v in curve.items()},
        window_loss_sum=float(window_sum),
        window_steps=window_steps,
        run_start=run_start,
    )
    columns = {c: curve[c] + off_grid[c] for c in CURVE_COLUMNS}
    result.curve = {
        c: np.asarray(v, dtype=np.int64 if c == "iteration" else np.float64) for c, v in columns.items()
    }
    val_loss = result.curve["val_loss"]
    if val_loss.size and not np.all(np.isnan(val_loss)):
        result.early_stop_iteration = int(result.curve["iteration"][int(np.nanargmin(val_loss))])
    for key in ("val_loss", "val_accuracy", "test_loss", "test_accuracy"):
        setattr(result, key, float(last_row[key]))
    result.wall_time = time.perf_counter() - t0
    result.state.wall_time = result.wall_time + (state.wall_time if state is not None else 0.0)
    return result
