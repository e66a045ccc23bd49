"""Batched training: K independent chains of one architecture trained in lockstep in one process, as one stacked
model, each exactly as the single-chain :func:`ticketlab.training.train` would train it.

    from ticketlab.batched import ChainSpec, train_chains
    specs = [ChainSpec(weights=w0, config=cfg, seed=s, masks=m) for s in range(8)]
    results = train_chains("lenet300", specs, (x, y), val=(xv, yv), test=(xt, yt), device="cuda")
    results[3].weights, results[3].to_evaluation(), results[3].state   # chain 3, as train() would give them

Each chain keeps everything of its own: starting weights, masks, data order and augmentation draws (its seed),
learning-rate schedule and window ``[start, stop)`` (rewind-init, rewind:K, lr-rewind and finetune chains share a
group when their step counts match), optimizer state, evaluation grid, curve and early-stopping bookkeeping. What a
group shares: the architecture, the training data, the batch size, the number of steps, and the optimizer's
settings other than the learning rate (:func:`group_key`; :func:`plan_groups` splits a list of chains into groups).

Equal to the single path up to floating-point rounding (a batched matrix product rounds like K separate ones only
up to the order of its sums): the tests check weights within 1e-5 relative and accuracies within 0.1 point for every
optimizer, window and reset. On CPU the default optimizer implementation applies torch's fused kernels per chain,
so the update itself is bit-identical; on CUDA the whole step is one CUDA graph (:mod:`~ticketlab.batched.cuda`).
On CPU batching does not pay (measured in ``benchmarks/bench_batched.py``), so :func:`default_chains_per_process`
is 1 there: callers train chains one after another unless asked to batch.

IMP over many runs at once (every level's chains and controls as groups, each run written to its own ticket file,
resumable) is :func:`ticketlab.lottery.run_imps` (:mod:`ticketlab.lottery.group`), behind ``ticketlab train --seeds``
and the study runner's ``--chains-per-process``.

Modules
-------
- :mod:`~ticketlab.batched.spec`: :class:`ChainSpec`, :class:`ChainResult`, grouping;
- :mod:`~ticketlab.batched.stack`: :class:`StackedModel`, the ``(K, P)`` parameter layout and the vmapped forward;
- :mod:`~ticketlab.batched.optim`: stacked SGD / Adam / AdamW with per-chain learning rates (a registry mirroring
  the training optimizer registry);
- :mod:`~ticketlab.batched.data`: each chain's batches from the device iteration counters;
- :mod:`~ticketlab.batched.engine`: the step, the evaluations, the loop, the results;
- :mod:`~ticketlab.batched.cuda`: CUDA graph capture of the step;
- :mod:`~ticketlab.batched.checkpoint`: the group checkpoint for resuming a killed call.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ticketlab.batched.checkpoint import chain_identity, load_checkpoint, load_results, resume_specs, save_checkpoint
from ticketlab.batched.engine import PRECISIONS, train_group
from ticketlab.batched.optim import STACKED_OPTIMIZERS, check_shared_settings, make_stacked_optimizer
from ticketlab.batched.spec import (
    DEFAULT_CHAINS_PER_PROCESS,
    ChainResult,
    ChainSpec,
    default_chains_per_process,
    group_key,
    plan_groups,
)
from ticketlab.batched.stack import StackedModel
from ticketlab.errors import ConfigError
from ticketlab.training.checks import check_int
from ticketlab.training.loop import _check_xy  # the single path's argument check

__all__ = [
    "ChainSpec", "ChainResult", "train_chains", "StackedModel", "STACKED_OPTIMIZERS", "make_stacked_optimizer",
    "group_key", "plan_groups", "default_chains_per_process", "DEFAULT_CHAINS_PER_PROCESS", "PRECISIONS",
    "chain_identity", "save_checkpoint", "load_checkpoint", "load_results",
]

ModelArg = nn.Module | str | Callable[[], nn.Module]


def train_chains(
    model: ModelArg,
    chains: Sequence[ChainSpec],
    data: tuple[torch.Tensor, torch.Tensor],
    *,
    val: tuple[torch.Tensor, torch.Tensor] | None = None,
    test: tuple[torch.Tensor, torch.Tensor] | None = None,
    device: Any = None,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    eval_batch_size: int = 1000,
    progress: bool | None = None,
    precision: str = "float32",
    optimizer_impl: str | None = None,
    cuda_graph: bool | None = None,
    num_classes: int | None = None,
    rezero_every_step: bool | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 0,
    keep_checkpoint: bool = False,
    desc: str = "chains",
) -> list[ChainResult]:
    """Train the chains ``chains`` together, each as ``train(model_k, spec.masks, data, spec.config,
    start_iteration=spec.start_iteration, stop_iteration=spec.stop_iteration, seed=spec.seed, state=spec.state,
    val=val, test=test, augment=augment)`` would.

    Parameters
    ----------
    model : nn.Module, str or callable() -> nn.Module
        The architecture (its own weights are not used): a module, a model registry name (built for
        ``num_classes`` and the training inputs' shape) or a factory.
    chains : sequence of ChainSpec
        The chains; they must share the batch size, the number of steps and the optimizer settings except the
        learning-rate schedule (:func:`group_key`).
    data : (Tensor (N, ...), Tensor (N,) int64)
        The training set, moved to ``device`` once.
    val, test : (Tensor, Tensor), optional
        Evaluated on each chain's grid (``config.eval_every``) and at the end, all due chains in one pass.
    device : torch.device or str, optional
        Default: the module's device, else CPU.
    augment : callable(x, generator) -> x, optional
        Batch augmentation, drawn per chain as the single path draws it.
    eval_batch_size : int
        Examples per chain per forward pass in evaluations.
    progress : bool or None
        A tqdm bar over the group's steps (``None``: when stderr is a terminal).
    precision : str
        ``"float32"`` (default; TF32 as torch's global flags have it), ``"tf32"`` (TF32 matmuls and
        convolutions on CUDA) or ``"bf16"`` (bfloat16 autocast of the forward). Recorded in ``ChainResult.engine``.
    optimizer_impl : str, optional
        ``"fused"`` (CPU default: torch's fused kernels per chain) or ``"tensor"`` (CUDA default; capturable).
    cuda_graph : bool, optional
        Capture the step in a CUDA graph (default: on CUDA). A capture that fails falls back to eager steps and
        says why in ``ChainResult.engine["cuda_graph_error"]``.
    num_classes : int, optional
        For a registry name: the width of the output layer (default 10).
    rezero_every_step : bool, optional
        As in :func:`~ticketlab.training.train`.
    checkpoint : path, optional
        A group checkpoint (:mod:`~ticketlab.batched.checkpoint`): continued from when it exists and belongs to
        these chains, written every ``checkpoint_every`` steps, removed at the end unless ``keep_checkpoint``.
    checkpoint_every : int
        Steps between checkpoints (0: only resume from an existing checkpoint, never write one).
    desc : str
        Label of the progress bar.

    Returns
    -------
    list of ChainResult
        In the order of ``chains``.
    """
    specs = [dataclasses.replace(s) for s in chains]
    if not specs:
        raise ConfigError("no chains to train")
    for k, spec in enumerate(specs):
        if not isinstance(spec, ChainSpec):
            raise ConfigError(f"chain {k} must be a ChainSpec; got {type(spec).__name__}")
        spec.check(k)
    steps = {s.steps for s in specs}
    if len(steps) > 1:
        raise ConfigError(f"the chains of a group must run the same number of steps; got {sorted(steps)} (group "
                          "them with ticketlab.batched.plan_groups)")
    check_shared_settings([s.config for s in specs])
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}")
    x, y = _check_xy("data", data)
    val = None if val is None else _check_xy("val", val)
    test = None if test is None else _check_xy("test", test)
    eval_batch_size = check_int("eval_batch_size", eval_batch_size, 1)
    template = _template(model, num_classes, tuple(x.shape[1:]))
    if device is None:
        device = next((p.device for p in template.parameters()), torch.device("cpu"))
    device = torch.device(device)
    options = dict(val=val, test=test, device=device, augment=augment, eval_batch_size=eval_batch_size,
                   progress=progress, precision=precision, optimizer_impl=optimizer_impl, cuda_graph=cuda_graph,
                   rezero_every_step=rezero_every_step, desc=desc)
    if checkpoint is None:
        return train_group(template, specs, (x, y), **options)
    return _train_segmented(template, specs, (x, y), Path(checkpoint),
                            check_int("checkpoint_every", checkpoint_every, 0), keep_checkpoint, options)


def _train_segmented(template: nn.Module, specs: list[ChainSpec], data, path: Path, every: int, keep: bool,
                     options: dict) -> list[ChainResult]:
    """Train in segments of ``every`` steps, checkpointing the group after each one (see :func:`train_chains`)."""
    identities = [chain_identity(s) for s in specs]
    stops = [s.stop for s in specs]
    taken: list[dict] = [{} for _ in specs]
    if path.exists():
        specs, taken = resume_specs(path, specs, identities)
    while True:
        left = stops[0] - specs[0].start_iteration
        cut = min(every, left) if every else left
        segment = [dataclasses.replace(s, stop_iteration=s.start_iteration + cut, snapshot_iterations=tuple(
            it for it in s.snapshot_iterations if it <= s.start_iteration + cut)) for s in specs]
        results = train_group(template, segment, data, **options)
        for k, r in enumerate(results):
            taken[k].update(r.snapshots)
            r.snapshots = dict(taken[k])
        if cut == left:
            break
        save_checkpoint(path, identities, results, taken)
        specs = [dataclasses.replace(s, weights=r.weights, state=r.state, start_iteration=r.result.stop_iteration,
                                     snapshot_iterations=tuple(i for i in s.snapshot_iterations if i not in taken[k]))
                 for k, (s, r) in enumerate(zip(specs, results))]
    if not keep:
        path.unlink(missing_ok=True)
    return results


def _template(model: ModelArg, num_classes: int | None, input_shape: tuple[int, ...]) -> nn.Module:
    if isinstance(model, nn.Module):
        return model
    if isinstance(model, str):
        from ticketlab.models import create_model

        return create_model(model, num_classes=10 if num_classes is None else num_classes, input_shape=input_shape)
    if callable(model):
        built = model()
        if not isinstance(built, nn.Module):
            raise ConfigError(f"the model factory returned {type(built).__name__}, not an nn.Module")
        return built
    raise ConfigError(f"model must be an nn.Module, a registry name or a factory; got {type(model).__name__}")
