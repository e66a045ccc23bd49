"""The batched training loop: :func:`train_group` trains K chains of one architecture in lockstep, each as the
single-chain :func:`~ticketlab.training.train` would, and returns one :class:`~ticketlab.batched.ChainResult` per
chain.

One step of the group (:meth:`_Group.step`): each chain's batch (its own data order), the stacked forward and
backward, gradient masking, the stacked optimizer step with each chain's learning rate (looked up on the device
from a table of the chains' schedules, indexed by the device iteration counters), and the running training-loss
sums, all device operations. On CUDA the step is captured once in a CUDA graph and replayed
(:mod:`ticketlab.batched.cuda`); elsewhere it runs eagerly, the same code. The host takes part only at events
known in advance: a chain entering a new epoch (its permutation is loaded), a snapshot, and an evaluation, where
every chain due on its own grid is evaluated in one batched pass and the host reads the results.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from contextlib import contextmanager, nullcontext
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ticketlab.batched.data import ChainData
from ticketlab.batched.optim import make_stacked_optimizer, scalar_dtype
from ticketlab.batched.spec import ChainResult, ChainSpec
from ticketlab.batched.stack import StackedModel
from ticketlab.errors import ConfigError
from ticketlab.training import (
    CURVE_COLUMNS,
    MODEL_RNG_STREAM,
    TrainResult,
    TrainState,
    derive_seed,
    get_optimizer,
    get_schedule,
    lr_at,
)
from ticketlab.training.schedules import lr_with

__all__ = ["train_group", "PRECISIONS"]

#: precision name -> (autocast dtype or None, TF32 on)
PRECISIONS = {"float32": (None, False), "tf32": (None, True), "bf16": (torch.bfloat16, False)}


def _lr_table(configs: Sequence[Any], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(D, T_max)`` float64 learning rates of the distinct configs at every iteration, and each chain's row."""
    distinct: dict[str, int] = {}
    rows, index = [], []
    for c in configs:
        key = repr(c.to_dict())
        if key not in distinct:
            distinct[key] = len(rows)
            schedule = get_schedule(c.schedule)
            rows.append([lr_with(c, schedule, i) for i in range(c.iterations)])
        index.append(distinct[key])
    width = max(len(r) for r in rows)
    table = torch.zeros((len(rows), width), dtype=torch.float64)
    for d, r in enumerate(rows):
        table[d, : len(r)] = torch.tensor(r, dtype=torch.float64)
    return table.to(device, scalar_dtype(device)), torch.tensor(index, dtype=torch.int64, device=device)


def _seeded_rng(seed: int, start: int, device: torch.device) -> dict[str, torch.Tensor]:
    """The RNG states the single path records for a model without randomness: seeded from ``(seed, start)``."""
    rng_seed = derive_seed(seed, MODEL_RNG_STREAM, start)
    rng = {"cpu": torch.Generator().manual_seed(rng_seed).get_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.Generator(device=device).manual_seed(rng_seed).get_state()
    return rng


@contextmanager
def _precision(name: str):
    """Switch TF32 on for the block when ``name`` asks for it (restored after)."""
    _, tf32 = PRECISIONS[name]
    if not tf32:
        yield
        return
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


class _ChainCurve:
    """One chain's evaluations, as the single path's curve keeps them (scheduled rows, off-grid end row)."""

    def __init__(self, spec: ChainSpec) -> None:
        self.spec, self.config = spec, spec.config
        state = spec.state
        self.rows = {c: list(state.curve[c]) for c in CURVE_COLUMNS} if state else {c: [] for c in CURVE_COLUMNS}
        self.off_grid: dict[str, list] = {c: [] for c in CURVE_COLUMNS}
        self.last_row: dict[str, float] | None = None
        # steps in the training-loss window: ``window_steps`` counted up to group step ``mark``
        self.window_steps, self.mark = (int(state.window_steps) if state else 0), 0

    def window(self, step: int) -> int:
        """Steps in the training-loss window after group step ``step``."""
        return self.window_steps + step - self.mark

    def evaluation_iterations(self) -> list[int]:
        """The iterations in ``(start, stop]`` on the chain's grid."""
        start, stop, c = self.spec.start_iteration, self.spec.stop, self.config
        its = set(range((start // c.eval_every + 1) * c.eval_every, stop + 1, c.eval_every)) if c.eval_every else set()
        if start < c.iterations <= stop:
            its.add(c.iterations)
        return sorted(its)

    def scheduled(self, iteration: int) -> bool:
        c = self.config
        return iteration == c.iterations or (c.eval_every > 0 and iteration % c.eval_every == 0)

    def has_row_at(self, iteration: int) -> bool:
        return bool(self.rows["iteration"]) and self.rows["iteration"][-1] == iteration

    def record(self, row: dict[str, float], keep: bool) -> None:
        self.last_row = row
        target = self.rows if keep else self.off_grid
        for c in CURVE_COLUMNS:
            target[c].append(row[c])


class _Group:
    """The state of one batched call: stacked model, optimizer, data, schedules, curves."""

    def __init__(self, template, specs: list[ChainSpec], data, val, test, device: torch.device, augment,
                 eval_batch_size: int, precision: str, optimizer_impl: str | None,
                 rezero_every_step: bool | None) -> None:
        self.specs, self.device = specs, device
        self.val, self.test, self.eval_batch_size = val, test, eval_batch_size
        self.autocast_dtype, _ = PRECISIONS[precision]
        configs = [s.config for s in specs]
        self.model = StackedModel(template, [s.weights for s in specs], [s.masks for s in specs], device)
        self.opt = make_stacked_optimizer(self.model, configs, optimizer_impl)
        for k, s in enumerate(specs):
            if s.state is not None:
                self.opt.load_chain_state(k, s.state.optimizer)
        if rezero_every_step is None:
            rezero_every_step = not getattr(get_optimizer(configs[0].optimizer), "keeps_zeros", False)
        self.rezero = bool(rezero_every_step) and self.model.mask is not None
        x, y = data
        self.data = ChainData(x, y, [s.seed for s in specs], [s.start_iteration for s in specs],
                              configs[0].batch_size, device, augment)
        self.lr_table, self.lr_row = _lr_table(configs, device)
        self.curves = [_ChainCurve(s) for s in specs]
        self.window_sum = torch.tensor([s.state.window_loss_sum if s.state else 0.0 for s in specs],
                                       dtype=scalar_dtype(device), device=device)
        self.num_classes = 0
        self.test_predictions: list[np.ndarray | None] = [None] * len(specs)
        self.static_batch: tuple[torch.Tensor, torch.Tensor] | None = None  # filled eagerly when augmenting

    # -- the step ---------------------------------------------------------------------------------------------

    def _autocast(self):
        if self.autocast_dtype is None:
            return nullcontext()
        # no weight-cast cache: it must not outlive a CUDA graph capture (and the weights change every step)
        return torch.autocast(self.device.type, dtype=self.autocast_dtype, cache_enabled=False)

    def step(self) -> None:
        """One step of every chain: device operations only (capturable)."""
        model, data = self.model, self.data
        xb, yb = data.batch() if self.static_batch is None else self.static_batch
        self.opt.lr.copy_(self.lr_table[self.lr_row, data.iteration])
        K, B = yb.shape
        with self._autocast():
            logits = model.forward(xb)
        loss = F.cross_entropy(logits.float().reshape(K * B, -1), yb.reshape(-1), reduction="none").view(K, B)
        loss = loss.mean(1)
        model.zero_grad()
        with warnings.catch_warnings():  # strided parameter views: autograd warns once about their grad layout
            warnings.filterwarnings("ignore", message="grad and param do not obey the gradient layout contract")
            loss.sum().backward()
        model.mask_gradients()
        self.opt.step()
        if self.rezero:
            model.mask_weights()
        self.window_sum.add_(loss.detach())
        data.advance()

    # -- evaluation ---------------------------------------------------------------------------------------------

    @torch.no_grad()
    def _evaluate_set(self, chains: list[int], x: torch.Tensor, y: torch.Tensor) -> tuple[list[float], np.ndarray]:
        """Mean loss and predictions ``(k, N)`` of ``chains`` on ``(x, y)`` in one batched pass per batch."""
        n, bs = len(x), self.eval_batch_size
        if n == 0:
            raise ConfigError("cannot evaluate on an empty set")
        total = torch.zeros(len(chains), dtype=scalar_dtype(self.device), device=self.device)
        predictions = []
        with torch.inference_mode():
            params, buffers = self.model.select(chains)
            for start in range(0, n, bs):
                xb = x[start : start + bs].to(self.device, non_blocking=True)
                yb = y[start : start + bs].to(self.device, non_blocking=True)
                with self._autocast():
                    logits = self.model.forward_shared(xb, params, buffers)
                logits = logits.float()
                k, b, c = logits.shape
                self.num_classes = int(c)
                losses = F.cross_entropy(logits.reshape(k * b, c), yb.repeat(k), reduction="none").view(k, b)
                total += losses.sum(1).to(total.dtype)
                predictions.append(logits.argmax(dim=-1))
        preds = torch.cat(predictions, dim=1).to("cpu", torch.int64).numpy()
        return (total / n).tolist(), preds

    def evaluate(self, chains: list[int], step: int, kind: str) -> None:
        """Evaluate ``chains`` after ``step`` steps. ``kind``: ``"start"`` (a scheduled row at the start),
        ``"close"`` (a scheduled row; the training-loss window restarts) or ``"end"`` (the end of the call: the
        off-grid row of an interrupted call)."""
        self.model.mask_weights()
        sums = self.window_sum.tolist()
        rows = []
        for k in chains:
            it = self.specs[k].start_iteration + step
            steps = self.curves[k].window(step)
            rows.append({"iteration": it, "lr": lr_at(self.specs[k].config, it),
                         "train_loss": sums[k] / steps if steps else math.nan})
        for name, pair in (("val", self.val), ("test", self.test)):
            if pair is None:
                for row in rows:
                    row[f"{name}_loss"] = row[f"{name}_accuracy"] = math.nan
                continue
            losses, preds = self._evaluate_set(chains, pair[0], pair[1])
            labels = pair[1].cpu().numpy()
            for j, (k, row) in enumerate(zip(chains, rows)):
                row[f"{name}_loss"] = losses[j]
                row[f"{name}_accuracy"] = float(np.mean(preds[j] == labels)) if preds.shape[1] else math.nan
                if name == "test":
                    self.test_predictions[k] = preds[j]
        for k, row in zip(chains, rows):
            curve = self.curves[k]
            if kind == "close":
                curve.record(row, keep=True)
                curve.window_steps, curve.mark = 0, step
            elif kind == "start":
                curve.record(row, keep=True)
            elif curve.has_row_at(row["iteration"]):
                curve.last_row = row  # resumed at the very end: the row is already in the curve
            else:
                curve.record(row, keep=False)
        if kind == "close":
            self.window_sum.index_fill_(0, torch.as_tensor(chains, device=self.device), 0.0)


def train_group(template, specs: list[ChainSpec], data, *, val=None, test=None, device: torch.device,
                augment=None, eval_batch_size: int = 1000, progress: bool | None = None, precision: str = "float32",
                optimizer_impl: str | None = None, cuda_graph: bool | None = None,
                rezero_every_step: bool | None = None, desc: str = "chains") -> list[ChainResult]:
    """Train one group in lockstep (the specs already checked and sharing their step count); see
    :func:`ticketlab.batched.train_chains`."""
    t0 = time.perf_counter()
    with _precision(precision):
        group = _Group(template, specs, data, val, test, device, augment, eval_batch_size, precision,
                       optimizer_impl, rezero_every_step)
        steps = specs[0].steps
        use_graph = device.type == "cuda" if cuda_graph is None else bool(cuda_graph)
        engine = _engine_info(group, precision, device)
        snapshots: list[dict[int, Any]] = [{} for _ in specs]
        runner = _make_runner(group, use_graph, engine)
        _run(group, steps, runner, snapshots, progress, desc)
        weights = [group.model.state_dict(k) for k in range(len(specs))]
    wall = time.perf_counter() - t0
    return [_result(group, k, weights[k], snapshots[k], engine, wall) for k in range(len(specs))]


def _engine_info(group: _Group, precision: str, device: torch.device) -> dict[str, Any]:
    autocast, _ = PRECISIONS[precision]
    return {
        "engine": "batched", "chains": len(group.specs), "device": str(device), "precision": precision,
        "dtype": str(group.model.dtype).replace("torch.", ""),
        "autocast": None if autocast is None else str(autocast).replace("torch.", ""),
        "matmul_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
        "cudnn_tf32": bool(torch.backends.cudnn.allow_tf32),
        "optimizer_impl": group.opt.impl, "cuda_graph": False, "torch": str(torch.__version__),
    }


def _make_runner(group: _Group, use_graph: bool, engine: dict[str, Any]) -> Callable[[], None]:
    """The function that runs one step: a CUDA graph's replay, or the eager step."""
    if not use_graph:
        return group.step
    _check_graph_device(group.device)
    from ticketlab.batched import cuda

    if group.data.augment is not None:  # the batch is prepared eagerly into static buffers
        group.static_batch = group.data.augmented_batch(0)
    try:
        replay = cuda.capture_step(group)
    except Exception as err:  # capture is an optimisation: fall back to the eager step, say so in the provenance
        engine["cuda_graph_error"] = f"{type(err).__name__}: {err}"[:300]
        group.static_batch = None
        return group.step
    engine["cuda_graph"] = True
    return replay


def _check_graph_device(device: torch.device) -> None:
    if device.type != "cuda":
        raise ConfigError(f"CUDA graphs need a CUDA device; got {device}")


def _run(group: _Group, steps: int, runner: Callable[[], None], snapshots: list[dict], progress, desc) -> None:
    """The step loop with its host events (epoch loads, augmentation, snapshots, evaluations)."""
    specs, data, curves = group.specs, group.data, group.curves
    loads = data.epoch_loads(steps)
    takes: dict[int, list[int]] = {}
    for k, s in enumerate(specs):
        for it in sorted(set(s.snapshot_iterations)):
            takes.setdefault(int(it) - s.start_iteration, []).append(k)
    evals: dict[int, list[int]] = {}
    for k, curve in enumerate(curves):
        for it in curve.evaluation_iterations():
            evals.setdefault(it - specs[k].start_iteration, []).append(k)
    first = [k for k, c in enumerate(curves)
             if c.scheduled(specs[k].start_iteration) and not c.has_row_at(specs[k].start_iteration)]
    if first:
        group.evaluate(first, 0, "start")
    bar = _progress_bar(progress, steps, desc)
    augmenting = data.augment is not None
    static = group.static_batch
    try:
        for s in range(steps):
            if s in loads:
                for k in loads[s]:
                    data.load_epoch(k, s)
            if s in takes:
                _take_snapshots(group, takes[s], s, snapshots)
            if augmenting:
                xb, yb = data.augmented_batch(s)
                if static is not None:  # the CUDA graph reads these buffers
                    static[0].copy_(xb)
                    static[1].copy_(yb)
                else:
                    group.static_batch = (xb, yb)
            runner()
            if s + 1 in evals:
                group.evaluate(evals[s + 1], s + 1, "close")
                if bar is not None:
                    bar.set_postfix(_postfix(group, evals[s + 1]), refresh=False)
            if bar is not None:
                bar.update(1)
        if steps in takes:
            _take_snapshots(group, takes[steps], steps, snapshots)
        unfinished = [k for k, c in enumerate(curves) if c.last_row is None or c.last_row["iteration"] != specs[k].stop]
        if unfinished:
            group.evaluate(unfinished, steps, "end")
    finally:
        if bar is not None:
            bar.close()
    for curve in curves:
        curve.window_steps, curve.mark = curve.window(steps), steps
    for k in range(len(specs)):
        snapshots[k] = {it: {n: t.to("cpu") for n, t in sd.items()} for it, sd in snapshots[k].items()}


def _take_snapshots(group: _Group, chains: list[int], step: int, snapshots: list[dict]) -> None:
    """Device copies of the chains' weights after ``step`` steps (moved to the CPU at the end of the call)."""
    model = group.model
    with torch.no_grad():
        for k in chains:
            sd = {}
            for key in model.state_keys:
                source = model.params.get(key, model.fixed.get(key, model.buffers.get(key)))
                sd[key] = source[k].detach().clone()
            snapshots[k][group.specs[k].start_iteration + step] = sd


def _postfix(group: _Group, chains: list[int]) -> dict[str, str]:
    row = group.curves[chains[0]].last_row
    which = "val" if group.val is not None else "test"
    return {"chains": str(len(group.specs)), "train_loss": f"{row['train_loss']:.4f}",
            f"{which}_acc": f"{row[which + '_accuracy']:.4f}"}


def _progress_bar(progress: bool | None, total: int, desc: str):
    if progress is False:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step", file=sys.stderr, disable=None if progress is None else False,
                dynamic_ncols=True, leave=False)


def _result(group: _Group, k: int, weights: dict, snapshots: dict, engine: dict, wall: float) -> ChainResult:
    """Chain ``k``'s :class:`ChainResult`, its ``result`` filled in as :func:`train` fills a TrainResult."""
    spec, curve = group.specs[k], group.curves[k]
    state = spec.state
    result = TrainResult(curve={}, early_stop_iteration=None, start_iteration=spec.start_iteration,
                         stop_iteration=spec.stop,
                         run_start_iteration=spec.start_iteration if state is None else int(state.run_start))
    if group.test is not None:
        result.test_targets = group.test[1].cpu().numpy().astype(np.int64)
        result.test_predictions = group.test_predictions[k]
    result.num_classes = group.num_classes
    last_lr = lr_at(spec.config, spec.stop - 1) if spec.steps else (
        state.optimizer["param_groups"][0]["lr"] if state is not None else None)
    optimizer_state = group.opt.chain_state_dict(k, last_lr)
    result.state = TrainState(
        iteration=spec.stop, seed=spec.seed, config=spec.config.to_dict(), optimizer=optimizer_state,
        rng=state.rng if state is not None else _seeded_rng(spec.seed, spec.start_iteration, group.device),
        curve={c: list(v) for c, v in curve.rows.items()}, window_loss_sum=float(group.window_sum[k]),
        window_steps=curve.window_steps, run_start=result.run_start_iteration,
    )
    columns = {c: curve.rows[c] + curve.off_grid[c] for c in CURVE_COLUMNS}
    result.curve = {c: np.asarray(v, dtype=np.int64 if c == "iteration" else np.float64) for c, v in columns.items()}
    val_loss = result.curve["val_loss"]
    if val_loss.size and not np.all(np.isnan(val_loss)):
        result.early_stop_iteration = int(result.curve["iteration"][int(np.nanargmin(val_loss))])
    for key in ("val_loss", "val_accuracy", "test_loss", "test_accuracy"):
        setattr(result, key, float(curve.last_row[key]))
    result.wall_time = wall
    result.state.wall_time = wall + (state.wall_time if state is not None else 0.0)
    return ChainResult(weights=weights, result=result, snapshots=snapshots, engine=dict(engine))
