"""The IMP loop: :class:`IMPRun` trains the dense network, then prunes, resets, retrains and writes level by level.

    from ticketlab.lottery import RunConfig, run_imp
    run_imp(RunConfig(model="lenet300", dataset="mnist", levels=5, reset="rewind-init"), "run.h5")

What each pruned level starts from and which iterations it retrains is its reset mode's, and what each control
trains is its control's (:mod:`ticketlab.lottery.resets`); the loop asks the registry entries.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import functools
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

from ticketlab import store
from ticketlab.errors import ConfigError
from ticketlab.lottery import seeds
from ticketlab.lottery.config import RunConfig
from ticketlab.lottery.data import RunData, load_data
from ticketlab.lottery.distributed import Distributed, resolve_device
from ticketlab.lottery.resets import CONTROLS, Sources
from ticketlab.lottery.start import same_start, start_method, start_record, start_text
from ticketlab.masks import TensorInfo
from ticketlab.outputs import make_parents, output_lock
from ticketlab.training import TrainConfig, steps_per_epoch, train


def _state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _masked(weights: Mapping[str, torch.Tensor], masks: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """A copy of a state dict with pruned weights set to exactly zero."""
    out = {}
    for k, v in weights.items():
        out[k] = v * torch.from_numpy(masks[k]).to(v.dtype) if k in masks else v.clone()
    return out


def _torch_weights(weights: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in weights.items()}


class IMPRun:
    """One IMP run writing to one ticket file. Use :func:`run_imp`, or this class to bring your own model and data.

    Parameters
    ----------
    config : RunConfig
    path : path-like
        The ticket file.
    model_factory : callable(seed) -> nn.Module, optional
        Builds a freshly initialised model (default: the registry model of ``config.model``). torch's global
        RNG is seeded with ``seed`` before each call, so ``lambda seed: MyNet()`` is enough. Any ``nn.Module``:
        its Linear and Conv weights are the prunable tensors.
    data : RunData, optional
        Preloaded data (default: :func:`load_data` of the registry dataset ``config.dataset``).

    Example: your own model and data (``config.model`` and ``config.dataset`` are then just labels)::

        config = RunConfig(model="my-mlp", dataset="my-data", levels=5, train=TrainConfig(iterations=2000))
        IMPRun(config, "mine.h5", model_factory=lambda seed: MyMLP(), data=RunData(...)).run()
    device : str
        ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
    progress : bool or None
        Progress bars on stderr; ``None`` = only when stderr is a terminal.
    log : callable(str), optional
        Receives one line per completed level.
    """

    def __init__(self, config: RunConfig, path: str | Path, *, model_factory: Callable[[int], nn.Module] | None = None,
                 data: RunData | None = None, device: str = "auto", progress: bool | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.path = Path(path)
        #: Where level 0's mask comes from when the run starts from a given ticket (``train --mask``): a
        #: :func:`~ticketlab.lottery.start.start_record` set by the caller before :meth:`run` (else made by it from
        #: the ``start_mask`` given); recorded in the file's config (``start``) and method, so that such a run is
        #: never taken for an IMP chain from dense.
        self.start: dict[str, str] | None = None
        self.dist = Distributed.from_environment(device)
        self.device = self.dist.device if self.dist.active else resolve_device(device)
        self.progress = progress
        self.log = log or (lambda line: None)
        if model_factory is None:
            from ticketlab.models import get_model_spec

            get_model_spec(config.model)  # unknown names are refused with the list of models
        self.data = data if data is not None else load_data(config)
        self.steps_per_epoch = steps_per_epoch(len(self.data.train[1]), config.train.batch_size)
        config.check_schedule(self.steps_per_epoch)  # epochs of the data actually trained on
        self._factory = model_factory or self._registry_factory
        probe = self._new_model(seeds.level_seed(config.seed, seeds.INIT, 0))
        self.tensors = self._tensor_table(probe)
        self.augment = None
        if config.augment:
            from ticketlab.datasets import augment_cifar, get_dataset_spec, list_datasets

            # pad with black as it looks after normalisation (registry datasets; 0 for the caller's own)
            fill = get_dataset_spec(config.dataset).black if config.dataset in list_datasets() else 0.0
            self.augment = functools.partial(augment_cifar, fill=fill)

    # -- model construction -----------------------------------------------------------------------------------

    def _registry_factory(self, seed: int) -> nn.Module:
        from ticketlab.models import create_model

        torch.manual_seed(seed)
        return create_model(self.config.model, num_classes=self.data.num_classes, input_shape=self.data.input_shape)

    def _new_model(self, seed: int) -> nn.Module:
        # torch is seeded here, so a factory that ignores its argument (``lambda seed: MyNet()``) still gives
        # reproducible and, for different seeds, different initialisations; the caller's RNG state is kept
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self._factory(seed)

    def _tensor_table(self, model: nn.Module) -> list[TensorInfo]:
        from ticketlab.models import output_layer, prunable_tensors

        table = prunable_tensors(model, exclude=self.config.exclude)
        if self.config.output_rate == 0:
            out = output_layer(model)
            table = [dataclasses.replace(t, pruned=False) if t.name == out else t for t in table]
        for pattern, _ in self.config.layer_rates:
            if not any(fnmatch.fnmatchcase(t.name, pattern) for t in table):
                raise ConfigError(f"layer rate pattern {pattern!r} matches no prunable tensor; the prunable "
                                  f"tensors are: {', '.join(t.name for t in table)}")
        if not any(t.pruned for t in table):
            raise ConfigError("no tensor is left to prune; check exclude and output_rate")
        self._output = output_layer(model)
        return table

    # -- pruning ------------------------------------------------------------------------------------------------

    def _prune(self, trained: Mapping[str, torch.Tensor], masks: Mapping[str, np.ndarray], level: int
               ) -> dict[str, np.ndarray]:
        from ticketlab.pruning import prune

        c = self.config
        names = [t.name for t in self.tensors if t.pruned]
        layer_rates = {}
        for name in names:
            for pattern, r in c.layer_rates:
                if fnmatch.fnmatchcase(name, pattern):
                    layer_rates[name] = r
                    break
        if c.output_rate and self._output in names:
            layer_rates[self._output] = c.output_rate
        layer_rates = layer_rates or None
        options = {"norm": c.norm} if c.norm else {}
        new = prune(c.strategy, {n: trained[n] for n in names}, {n: masks[n] for n in names}, c.rate,
                    layer_rates=layer_rates, rng=seeds.level_rng(c.seed, seeds.PRUNE, level), **options)
        return {t.name: new.get(t.name, masks[t.name]) for t in self.tensors}

    # -- training -----------------------------------------------------------------------------------------------

    def _train(self, start_weights: Mapping[str, torch.Tensor], masks: Mapping[str, np.ndarray],
               window: tuple[int, int], config: TrainConfig, desc: str, callback=None):
        model = self._new_model(0)
        model.load_state_dict(start_weights)
        model.to(self.device)
        if self.dist.active:
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        result = train(model, masks, self.data.train, config, start_iteration=window[0], stop_iteration=window[1],
                       seed=self.config.seed, device=self.device, val=self.data.val, test=self.data.test,
                       callback=callback, progress=self.progress if self.dist.primary else False,
                       augment=self.augment, desc=desc)
        from ticketlab.training import unwrap_model

        return _state_dict(unwrap_model(model)), result.to_evaluation(self.data.num_classes)

    def _retrain(self, start_weights, masks, desc: str):
        """Train a pruned level (or a control) over the window and with the config of the reset mode."""
        c = self.config
        return self._train(start_weights, masks, c.retrain_window(self.steps_per_epoch), c.retrain_config(), desc)

    def _fresh(self, seed: int) -> dict[str, torch.Tensor]:
        """The weights of a freshly initialised model."""
        return _state_dict(self._new_model(seed))

    # -- the loop -----------------------------------------------------------------------------------------------

    def _create(self, overwrite: bool, init: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        c = self.config
        if init is None:
            init = self._fresh(seeds.level_seed(c.seed, seeds.INIT, 0))
        config = c.to_dict()
        config["seeds"] = seeds.seeds_record(c.seed, c.split_seed)
        if self.start is not None:
            config["start"] = dict(self.start)
        store.create(self.path, tensors=self.tensors, model=c.model, method=start_method(c, self.start),
                     config=config, seed=c.seed,
                     dataset=store.DatasetInfo(c.task, self.data.num_classes, self.data.class_names,
                                               self.data.test[1].numpy()),
                     init_weights=init, overwrite=overwrite)
        return init

    def _check_resumable(self) -> None:
        t = store.open_ticket(self.path)
        stored = dict(t.config)
        stored.pop("seeds", None)
        started = stored.pop("start", None)
        if not same_start(started, self.start):
            raise ConfigError(f"{self.path} was started from {start_text(started)}, now from "
                              f"{start_text(self.start)}; resume with the same --mask (or none), or start again "
                              "with --overwrite")
        stored.pop("data_dir", None)
        for k, v in stored.pop("train", {}).items():
            stored[f"train.{k}"] = v
        mine = self.config.identity()
        # more levels than the file was made for extends the run (prune further); fewer is a different run
        extend = isinstance(stored.get("levels"), int) and mine["levels"] > stored["levels"]
        diff = [k for k in mine if stored.get(k) != mine[k] and not (k == "levels" and extend)]
        if diff:
            k = diff[0]
            raise ConfigError(
                f"{self.path} was made with other settings ({k}: {stored.get(k)!r} in the file, {mine[k]!r} now); "
                "resume with the same options, or start again with --overwrite"
            )
        if [x.name for x in t.tensors] != [x.name for x in self.tensors]:
            raise ConfigError(f"{self.path}: its tensors differ from the model's; start again with --overwrite")
        if extend:
            config = dict(t.config)
            config["levels"] = self.config.levels
            t.close()
            writer = store.TicketWriter(self.path)
            writer.write_config(config)
            writer.set_status("in_progress")

    def run(self, *, resume: bool = False, overwrite: bool = False, start_mask: Mapping[str, np.ndarray] | None = None,
            start_init: Mapping[str, Any] | None = None) -> Path:
        """Run (or resume) the whole IMP chain; returns the ticket file's path.

        ``resume`` continues the file from its last completed level, or starts it when there is no file yet
        (the command line refuses ``--resume`` with nothing to resume); ``overwrite`` replaces an existing file.
        Missing parent directories are created. The file's one-writer lock
        (:func:`ticketlab.outputs.output_lock`) is held for the whole run: a run aimed at a file another process
        is writing is refused at once (:class:`~ticketlab.outputs.OutputBusyError`), before anything is replaced.

        Under ``torchrun`` (several processes), rank 0 creates the file, prunes and writes; every rank trains its
        share of each batch (DistributedDataParallel) and receives the same mask from rank 0.
        """
        with contextlib.ExitStack() as lock:
            try:
                # one writer per file: the lock is held for the whole run, taken before anything is replaced
                self.dist.on_primary(lambda: lock.enter_context(output_lock(make_parents(self.path))) and None)
                return self._run(resume, overwrite, start_mask, start_init)
            finally:
                self.dist.close()

    def _run(self, resume: bool, overwrite: bool, start_mask: Mapping[str, np.ndarray] | None,
             start_init: Mapping[str, Any] | None) -> Path:
        c, d = self.config, self.dist
        initial_masks, start_init = self._start_point(start_mask, start_init)
        if start_mask is not None and self.start is None:  # given through the API: record it all the same
            self.start = start_record(None, start_mask, start_init)
        done = d.on_primary(lambda: self._prepare_file(resume, overwrite, start_init))
        with store.open_ticket(self.path) as t:
            init = _torch_weights(t.weights("init"))
        writer = store.TicketWriter(self.path) if d.primary else None
        reset = c.reset_mode
        # the checkpoint the reset mode starts levels from (rewind:K), taken at iteration K of level 0
        checkpoint = reset.checkpoint
        rewind_k = c.rewind_iteration(self.steps_per_epoch) if checkpoint else None

        # level 0: the dense network (or the given start mask), trained for the full schedule from θ0
        if 0 not in done:
            snapshot: dict[str, dict] = {}

            def capture(iteration: int, model: nn.Module) -> None:
                if iteration == rewind_k:
                    snapshot[checkpoint] = _state_dict(model)

            start = time.perf_counter()
            trained, ev = self._train(_masked(init, initial_masks), initial_masks, (0, c.train.iterations), c.train,
                                      "level 0", callback=capture if rewind_k is not None else None)

            def write() -> None:
                if checkpoint:
                    writer.write_checkpoint(checkpoint, snapshot[checkpoint], iteration=rewind_k, overwrite=True)
                writer.write_level(0, initial_masks, evaluation=ev, weights=trained,
                                   attrs={"wall_time": time.perf_counter() - start})
                self.log(self._line(0))

            d.on_primary(write)
        rewind = None
        if checkpoint:
            with store.open_ticket(self.path) as t:
                rewind = _torch_weights(t.weights(checkpoint))

        for level in range(1, c.levels + 1):
            inputs = self._level_inputs(level, init, rewind)
            if inputs is None:
                continue
            start_weights, masks, stored, have_branches = inputs
            if not stored:
                start = time.perf_counter()
                trained, ev = self._retrain(_masked(start_weights, masks), masks, f"level {level}")
                d.on_primary(lambda: writer.write_level(
                    level, masks, evaluation=ev, weights=trained,
                    attrs={"rate": c.rate, "wall_time": time.perf_counter() - start}))
            for control in c.controls:
                if control not in have_branches:
                    self._control(writer, control, level, masks, start_weights)
            d.on_primary(lambda: self.log(self._line(level)))
        d.on_primary(lambda: writer.set_status("complete"))
        return self.path

    # -- hooks shared with the batched loop of several runs (ticketlab.lottery.group) --------------------------

    def _start_point(self, start_mask: Mapping[str, np.ndarray] | None, start_init: Mapping[str, Any] | None
                     ) -> tuple[dict[str, np.ndarray], dict[str, torch.Tensor] | None]:
        """Level 0's masks (all ones, or the given start mask) and the given initial weights, both checked."""
        initial_masks = {t.name: np.ones(t.shape, bool) for t in self.tensors}
        if start_mask is not None:  # validated before anything is written
            from ticketlab.masks import check_masks

            initial_masks = check_masks(start_mask, self.tensors)
        if start_init is not None:
            start_init = self._check_init(start_init)
        return initial_masks, start_init

    def _prepare_file(self, resume: bool, overwrite: bool, start_init: Mapping[str, Any] | None) -> list[int]:
        """Create the ticket file (or check the one to resume); the levels it already holds."""
        if self.path.exists() and not (resume or overwrite):
            raise ConfigError(f"{self.path} already exists; use --resume to continue it or --overwrite to "
                              "replace it")
        if resume and self.path.exists():
            self._check_resumable()
            return store.open_ticket(self.path).levels
        self._create(overwrite=overwrite, init=start_init)
        return []

    def _level_inputs(self, level: int, init: Mapping[str, torch.Tensor], rewind: Mapping[str, torch.Tensor] | None):
        """What pruned level ``level`` trains, read from the file: ``(start weights, masks, stored, controls
        written)`` (``stored``: the level itself is written, only controls may be missing), or ``None`` when the
        level and all its controls are written. The masks are pruned from the previous level (on the primary)."""
        c, reset = self.config, self.config.reset_mode
        with store.open_ticket(self.path) as t:
            have_level = level in t.levels
            have_branches = set(t.branches(level)) if have_level else set()
            if have_level and have_branches >= set(c.controls):
                return None
            prev_masks = t.masks(level - 1)
            prev_trained = _torch_weights(t.weights(level=level - 1))
            stored_masks = t.masks(level) if have_level else None
        start_weights = reset.start_weights(Sources(init=init, trained=prev_trained, rewind=rewind,
                                                    fresh=self._fresh, seed=c.seed, level=level))
        if stored_masks is not None:
            return start_weights, stored_masks, True, have_branches

        def prune_level() -> dict[str, np.ndarray]:
            pruned = self._prune(prev_trained, prev_masks, level)
            return reset.level_masks(pruned, self.tensors, c.seed, level)

        return start_weights, self.dist.on_primary(prune_level), False, have_branches

    def _control_inputs(self, control: str, level: int, masks, start_weights):
        """The control ``control`` at ``level``: ``(entry, seed, masks, start weights)`` (pruned weights zeroed)."""
        entry = CONTROLS.get(control)
        seed = seeds.level_seed(self.config.seed, entry.stream, level)
        m = self.dist.on_primary(lambda: entry.masks(masks, self.tensors, np.random.default_rng(seed)))
        return entry, seed, m, _masked(entry.start_weights(start_weights, self._fresh, seed), m)

    def _check_init(self, weights: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Given initial weights as a state dict for this run's model; refuses missing keys and wrong shapes."""
        reference = self._fresh(0)
        out = {}
        for key, ref in reference.items():
            if key not in weights:
                raise ConfigError(f"the given initial weights lack {key!r}, which model {self.config.model!r} has")
            value = torch.as_tensor(np.asarray(weights[key]))
            if tuple(value.shape) != tuple(ref.shape):
                raise ConfigError(f"initial weight {key!r} has shape {tuple(value.shape)}, the model's has "
                                  f"{tuple(ref.shape)}")
            out[key] = value.to(ref.dtype)
        return out

    def _control(self, writer: store.TicketWriter | None, control: str, level: int, masks, start_weights) -> None:
        """Train the control ``control`` beside the chain at ``level`` and write it as a branch."""
        entry, seed, m, w = self._control_inputs(control, level, masks, start_weights)
        trained, ev = self._retrain(w, m, f"level {level} {control}")
        self.dist.on_primary(lambda: writer.write_branch(
            level, control, m, kind=control, evaluation=ev, init_weights=w, weights=trained, seed=seed,
            description=entry.description))

    def _line(self, level: int) -> str:
        t = store.open_ticket(self.path)
        r = t.level_record(level)
        out = f"level {level}: density {r['density']:.4f}, accuracy {r['accuracy']:.4f}"
        for b in t.branches(level):
            out += f", {b} {t.level_record(level, branch=b)['accuracy']:.4f}"
        return out


def run_imp(config: RunConfig, path: str | Path, *, resume: bool = False, overwrite: bool = False,
            device: str = "auto", progress: bool | None = None, log: Callable[[str], None] | None = None,
            start_mask: Mapping[str, np.ndarray] | None = None, start_init: Mapping[str, Any] | None = None,
            chains_per_process: int | None = None, precision: str = "float32", start_source: str | None = None
            ) -> Path:
    """Run IMP as configured and write every level to the ticket file at ``path``; see :class:`IMPRun`.

    ``start_source`` names the given ``start_mask`` (``"FILE:LEVEL"``) in the file's config and method.

    Given a list of configs and a list of paths, runs them all with their chains trained in batched groups and
    returns the list of paths (:func:`ticketlab.lottery.run_imps`, which ``chains_per_process`` and ``precision``
    are for; with one config they batch its controls with its chain).
    """
    if isinstance(config, (list, tuple)) or chains_per_process is not None or precision != "float32":
        from ticketlab.lottery.group import run_imps

        many = isinstance(config, (list, tuple))
        out = run_imps(list(config) if many else [config], list(path) if many else [path], resume=resume,
                       overwrite=overwrite, device=device, progress=progress, log=log, start_mask=start_mask,
                       start_init=start_init, chains_per_process=chains_per_process, precision=precision,
                       start_source=start_source)
        return out if many else out[0]
    run = IMPRun(config, path, device=device, progress=progress, log=log)
    run.start = start_record(start_source, start_mask, start_init)
    return run.run(resume=resume, overwrite=overwrite, start_mask=start_mask, start_init=start_init)
