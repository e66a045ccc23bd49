"""The masked training loop: :func:`train` runs iterations ``[start, stop)`` of a run with pruned weights held
at 0 (:class:`~ticketlab.training.MaskedParameters`), evaluating on the curve's grid.

One call is set up by :func:`_prepare` (validated arguments), runs its steps in :func:`_run_iterations` (the hot
loop), records evaluations in a :class:`_Curve`, and is wrapped up by :func:`_finish` into a
:class:`~ticketlab.training.TrainResult` whose ``state`` lets the next call continue bit-exactly (see
:mod:`ticketlab.training`, "Bit-exact resume").
"""

from __future__ import annotations

import copy
import math
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ticketlab.errors import ConfigError
from ticketlab.training.checks import check_int
from ticketlab.training.config import TrainConfig
from ticketlab.training.data_order import (
    AUGMENT_STREAM,
    MODEL_RNG_STREAM,
    derive_generator,
    derive_seed,
    epoch_permutation,
    steps_per_epoch,
)
from ticketlab.training.inference import evaluate_set, model_device
from ticketlab.training.masking import MaskedParameters
from ticketlab.training.optimizers import get_optimizer, make_optimizer
from ticketlab.training.schedules import get_schedule, lr_at, lr_with
from ticketlab.training.state import CURVE_COLUMNS, TrainResult, TrainState

__all__ = ["train"]

XY = tuple[torch.Tensor, torch.Tensor]


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
    call = _prepare(model, data, config, start_iteration, stop_iteration, seed, device, val, test, state)
    masked = MaskedParameters(model, masks)
    optimizer = make_optimizer(model, config)
    if rezero_every_step is None:
        rezero_every_step = not getattr(get_optimizer(config.optimizer), "keeps_zeros", False)
    mask_weights = masked.mask_weights if rezero_every_step and masked.pruned_parameters else None
    if state is not None:
        optimizer.load_state_dict(copy.deepcopy(state.optimizer))

    result = TrainResult(
        curve={},
        early_stop_iteration=None,
        start_iteration=call.start,
        stop_iteration=call.stop,
        run_start_iteration=call.start if state is None else int(state.run_start),
    )
    if call.test is not None:
        result.test_targets = call.test[1].cpu().numpy().astype(np.int64)
    bar = _progress_bar(progress, call.start, call.stop, desc)
    curve = _Curve(call, model, masked, result, state, eval_batch_size, bar)

    was_training = model.training
    devices = [call.device] if call.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            _seed_model_rng(state, call.seed, call.start, call.device)
            if call.scheduled(call.start) and not curve.has_row_at(call.start):
                curve.record(curve.evaluate(call.start), keep=True)
            _run_iterations(model, optimizer, masked, mask_weights, call, curve, callback, augment, bar)
            curve.finish(call.stop)
            rng = _model_rng_state(call.device)
    finally:
        model.train(was_training)
        if bar is not None:
            bar.close()
    return _finish(result, call, curve, optimizer, rng, state, t0)


# --------------------------------------------------------------------------------------------------------------
# Setting up a call
# --------------------------------------------------------------------------------------------------------------


@dataclass
class _Call:
    """The validated arguments of one :func:`train` call; ``x``, ``y`` already on ``device``."""

    config: TrainConfig
    seed: int
    start: int
    stop: int
    rank: int
    world: int
    x: torch.Tensor
    y: torch.Tensor
    val: XY | None
    test: XY | None
    device: torch.device
    steps_per_epoch: int

    def scheduled(self, iteration: int) -> bool:
        """Whether ``iteration`` is on the curve's grid: a multiple of ``eval_every``, or the end of training."""
        config = self.config
        return iteration == config.iterations or (config.eval_every > 0 and iteration % config.eval_every == 0)


def _prepare(model, data, config, start_iteration, stop_iteration, seed, device, val, test, state) -> _Call:
    """Check the arguments of a :func:`train` call (:class:`ConfigError` naming the first bad one) and move the
    training set to the device."""
    if not isinstance(config, TrainConfig):
        raise ConfigError(f"config must be a TrainConfig; got {type(config).__name__}")
    seed = check_int("seed", seed, 0)
    total = config.iterations
    start = check_int("start_iteration", start_iteration, 0)
    stop = total if stop_iteration is None else check_int("stop_iteration", stop_iteration, 0)
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
    device = model_device(model) if device is None else torch.device(device)
    spe = steps_per_epoch(len(x), config.batch_size)
    if state is not None:
        _check_state(state, start, seed, config)
    return _Call(config, seed, start, stop, rank, world, x.to(device), y.to(device), val, test, device, spe)


def _check_xy(what: str, pair: Any) -> XY:
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


def _check_state(state: Any, start: int, seed: int, config: TrainConfig) -> None:
    """Refuse a resume state that does not belong to this call."""
    if not isinstance(state, TrainState):
        raise ConfigError(f"state must be a TrainState; got {type(state).__name__}")
    if state.iteration != start:
        raise ConfigError(
            f"the state was saved at iteration {state.iteration}; start_iteration must equal it, got {start}"
        )
    if state.seed != seed or state.config != config.to_dict():
        raise ConfigError("the state was saved by a run with another seed or config; resume with the same ones")


def _progress_bar(progress: bool | None, start: int, stop: int, desc: str):
    """A tqdm bar on stderr counting absolute iterations (``None`` when ``progress`` is False); its postfix shows
    the last evaluation."""
    if progress is False:
        return None
    from tqdm import tqdm

    return tqdm(
        total=stop, initial=start, desc=desc, unit="it", file=sys.stderr,
        disable=None if progress is None else False, dynamic_ncols=True, leave=False,
    )


# --------------------------------------------------------------------------------------------------------------
# The model's random stream
# --------------------------------------------------------------------------------------------------------------


def _seed_model_rng(state: TrainState | None, seed: int, start: int, device: torch.device) -> None:
    """Set the torch RNG used by the model's own randomness (dropout): restored from ``state``, else seeded from
    ``(seed, start)``. Called inside ``torch.random.fork_rng``, so the caller's RNG state is left alone."""
    if state is not None:
        torch.set_rng_state(state.rng["cpu"])
        if device.type == "cuda" and "cuda" in state.rng:
            torch.cuda.set_rng_state(state.rng["cuda"], device)
    else:
        rng_seed = derive_seed(seed, MODEL_RNG_STREAM, start)
        torch.random.default_generator.manual_seed(rng_seed)
        if device.type == "cuda":
            index = device.index if device.index is not None else torch.cuda.current_device()
            torch.cuda.default_generators[index].manual_seed(rng_seed)


def _model_rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    """The torch RNG states a resumed call restores: ``"cpu"``, and ``"cuda"`` on a GPU."""
    rng = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    return rng


# --------------------------------------------------------------------------------------------------------------
# The curve
# --------------------------------------------------------------------------------------------------------------


class _Curve:
    """The evaluations of one call and the running training-loss window.

    ``rows`` holds the scheduled evaluations (on the grid; carried on in the state, after those of earlier calls),
    ``off_grid`` the end row of an interrupted call (reported, not carried on). ``window_sum`` / ``window_steps``
    sum the per-step training losses since the last scheduled evaluation.
    """

    def __init__(self, call: _Call, model: nn.Module, masked: MaskedParameters, result: TrainResult,
                 state: TrainState | None, eval_batch_size: int, bar) -> None:
        self.call, self.model, self.masked, self.result = call, model, masked, result
        self.eval_batch_size = eval_batch_size
        self.bar = bar
        if state is not None:
            self.rows: dict[str, list] = {c: list(state.curve[c]) for c in CURVE_COLUMNS}
        else:
            self.rows = {c: [] for c in CURVE_COLUMNS}
        self.off_grid: dict[str, list] = {c: [] for c in CURVE_COLUMNS}
        self.last_row: dict[str, float] | None = None
        acc_dtype = torch.float32 if call.device.type == "mps" else torch.float64
        self.window_sum = torch.zeros((), dtype=acc_dtype, device=call.device)
        self.window_steps = 0
        if state is not None:
            self.window_sum.fill_(state.window_loss_sum)
            self.window_steps = int(state.window_steps)

    def has_row_at(self, iteration: int) -> bool:
        """Whether the last scheduled row is at ``iteration`` (a call resumed where the grid already has one)."""
        return bool(self.rows["iteration"]) and self.rows["iteration"][-1] == iteration

    def evaluate(self, iteration: int) -> dict[str, float]:
        """Re-zero the pruned weights and evaluate: one row of the curve at ``iteration``."""
        call = self.call
        self.masked.mask_weights()
        row = {"iteration": iteration, "lr": lr_at(call.config, iteration)}
        steps = self.window_steps
        if call.world > 1:  # the mean over all processes' shares of the batches
            total_loss = self.window_sum.clone()
            torch.distributed.all_reduce(total_loss)
            row["train_loss"] = float(total_loss) / (call.world * steps) if steps else math.nan
        else:
            row["train_loss"] = float(self.window_sum) / steps if steps else math.nan
        for name, pair in (("val", call.val), ("test", call.test)):
            if pair is None:
                row[f"{name}_loss"] = row[f"{name}_accuracy"] = math.nan
                continue
            loss, preds, self.result.num_classes = evaluate_set(
                self.model, pair[0], pair[1], self.eval_batch_size, call.device
            )
            row[f"{name}_loss"] = loss
            row[f"{name}_accuracy"] = float(np.mean(preds == pair[1].cpu().numpy())) if len(preds) else math.nan
            if name == "test":
                self.result.test_predictions = preds
        return row

    def record(self, row: dict[str, float], keep: bool) -> None:
        """Add ``row`` to the scheduled rows (``keep``) or to the off-grid ones, and show it on the bar."""
        self.last_row = row
        target = self.rows if keep else self.off_grid
        for c in CURVE_COLUMNS:
            target[c].append(row[c])
        if self.bar is not None:
            which = "val" if self.call.val is not None else "test"
            self.bar.set_postfix(
                {"epoch": f"{row['iteration'] / self.call.steps_per_epoch:.1f}",
                 "train_loss": f"{row['train_loss']:.4f}", f"{which}_acc": f"{row[which + '_accuracy']:.4f}"},
                refresh=False,
            )

    def close_window(self, iteration: int) -> None:
        """A scheduled evaluation at ``iteration``: record it and start a new training-loss window."""
        self.record(self.evaluate(iteration), keep=True)  # evaluation restores train mode
        self.window_sum.zero_()
        self.window_steps = 0

    def finish(self, stop: int) -> None:
        """Make sure the curve ends with an evaluation at ``stop``."""
        if self.last_row is None or self.last_row["iteration"] != stop:
            row = self.evaluate(stop)
            if self.has_row_at(stop):
                self.last_row = row  # resumed at the very end: the row is already in the curve
            else:
                self.record(row, keep=False)  # the end of an interrupted run: reported, not carried on


# --------------------------------------------------------------------------------------------------------------
# The steps
# --------------------------------------------------------------------------------------------------------------


def _run_iterations(model: nn.Module, optimizer: torch.optim.Optimizer, masked: MaskedParameters,
                    mask_weights: Callable[[], None] | None, call: _Call, curve: _Curve,
                    callback: Callable[[int, nn.Module], Any] | None,
                    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None, bar) -> None:
    """Run iterations ``[call.start, call.stop)``: the hot loop, kept free of per-step Python work and host
    syncs (the training loss is summed on the device)."""
    config, seed, device = call.config, call.seed, call.device
    x, y, n, bs, spe = call.x, call.y, len(call.x), config.batch_size, call.steps_per_epoch
    rank, world = call.rank, call.world
    param_groups = optimizer.param_groups
    schedule = get_schedule(config.schedule)
    scheduled = call.scheduled
    group_lr = None
    window_sum, window_steps = curve.window_sum, curve.window_steps
    model.train()
    epoch, perm = -1, None
    for it in range(call.start, call.stop):
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
            xb = augment(xb, derive_generator(seed, AUGMENT_STREAM, it, device))
        lr = lr_with(config, schedule, it)
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
        window_sum += loss.detach()  # in place: curve.window_sum
        window_steps += 1
        if scheduled(it + 1):
            curve.window_steps = window_steps
            curve.close_window(it + 1)
            window_steps = 0
        if bar is not None:
            bar.update(1)
    curve.window_steps = window_steps


# --------------------------------------------------------------------------------------------------------------
# The result
# --------------------------------------------------------------------------------------------------------------


def _finish(result: TrainResult, call: _Call, curve: _Curve, optimizer: torch.optim.Optimizer,
            rng: dict[str, torch.Tensor], state: TrainState | None, t0: float) -> TrainResult:
    """Fill in ``result``: the curve as arrays, the final metrics, the early-stop iteration and the state."""
    result.state = TrainState(
        iteration=call.stop,
        seed=call.seed,
        config=call.config.to_dict(),
        optimizer=optimizer.state_dict(),
        rng=rng,
        curve={c: list(v) for c, v in curve.rows.items()},
        window_loss_sum=float(curve.window_sum),
        window_steps=curve.window_steps,
        run_start=result.run_start_iteration,
    )
    columns = {c: curve.rows[c] + curve.off_grid[c] for c in CURVE_COLUMNS}
    result.curve = {
        c: np.asarray(v, dtype=np.int64 if c == "iteration" else np.float64) for c, v in columns.items()
    }
    val_loss = result.curve["val_loss"]
    if val_loss.size and not np.all(np.isnan(val_loss)):
        result.early_stop_iteration = int(result.curve["iteration"][int(np.nanargmin(val_loss))])
    for key in ("val_loss", "val_accuracy", "test_loss", "test_accuracy"):
        setattr(result, key, float(curve.last_row[key]))
    result.wall_time = time.perf_counter() - t0
    result.state.wall_time = result.wall_time + (state.wall_time if state is not None else 0.0)
    return result
