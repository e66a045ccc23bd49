"""Iterative magnitude pruning (IMP): train, prune, reset, retrain — one ticket-file level at a time.

    from ticketlab.imp import RunConfig, run_imp
    run_imp(RunConfig(model="lenet300", dataset="mnist", levels=5, reset="rewind-init"), "run.h5")

The loop (Frankle & Carbin 2019, Strategy 1): train the dense network (level 0); then for each level L = 1..n,
prune the fraction ``rate`` of the remaining weights of the previous level's *trained* network (masks are
nested), set the surviving weights according to the reset mode, retrain, evaluate, and write the level.

Reset modes (:data:`RESET_MODES`; the retraining length R defaults to the full schedule of T iterations):

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

Controls beside the chain (``controls``; stored as branches of each level L ≥ 1, as OpenLTH does):
``reinit`` (the level's mask, fresh initial values), ``shuffle`` (the level's mask permuted within each layer,
the chain's starting weights for that level) and ``random`` (a uniformly random mask with the same per-layer
kept counts, fresh initial values). Each is trained over the same iterations as the chain's retraining.

Everything random is seeded from ``(seed, purpose, level)`` (:func:`ticketlab.training.derive_seed`), never from
a running generator, so a run resumed after an interruption at any moment produces the same masks bit for bit.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

from ticketlab import store
from ticketlab.errors import ConfigError, TicketlabError
from ticketlab.masks import TensorInfo
from ticketlab.training import TrainConfig, derive_seed, lr_at, steps_per_epoch, train

# Seed streams: each random decision draws from derive_seed(seed, STREAM, level).
_INIT, _PRUNE, _REINIT, _SHUFFLE, _CONTROL_REINIT, _CONTROL_SHUFFLE, _CONTROL_RANDOM = range(100, 107)
_STREAMS = {"init": _INIT, "random pruning": _PRUNE, "reinit reset": _REINIT, "shuffle reset": _SHUFFLE,
            "reinit control": _CONTROL_REINIT, "shuffle control": _CONTROL_SHUFFLE, "random control": _CONTROL_RANDOM}

#: Reset modes and their one-line descriptions (``rewind:K`` stands for any K).
RESET_MODES = {
    "rewind-init": "surviving weights back to their initial values (Frankle & Carbin 2019)",
    "rewind:K": "back to their values at iteration K (or 'Kep' epochs), schedule and data order resumed at K "
    "(Frankle et al. 2020)",
    "lr-rewind": "keep the trained weights, replay the learning-rate schedule (Renda et al. 2020)",
    "finetune": "keep the trained weights, train at the final learning rate (Renda et al. 2020)",
    "reinit": "control: same mask, fresh random initial values at every level (Frankle & Carbin 2019)",
    "shuffle": "control: each layer's mask permuted at random, initial values kept (Frankle et al. 2021)",
}
#: Controls trained beside the chain at every pruned level.
CONTROLS = {
    "reinit": "the level's mask with fresh random initial values",
    "shuffle": "the level's mask permuted within each layer (same per-layer count)",
    "random": "a uniformly random mask with the same per-layer kept counts, fresh initial values",
}
_REWIND_RE = re.compile(r"^rewind:(\d+)(it|ep)?$")


def parse_reset(reset: str) -> tuple[str, int | None, str | None]:
    """Split a reset mode into (mode, K, unit): ``"rewind:500"`` → ``("rewind", 500, "it")``."""
    if reset in RESET_MODES and reset != "rewind:K":
        return reset, None, None
    m = _REWIND_RE.match(reset)
    if m:
        return "rewind", int(m.group(1)), m.group(2) or "it"
    raise ConfigError(
        f"unknown reset mode {reset!r}; choose one of: rewind-init, rewind:K (K iterations, e.g. rewind:500, "
        "or epochs, e.g. rewind:2ep), lr-rewind, finetune, reinit, shuffle"
    )


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines an IMP run. Immutable and validated on construction.

    Attributes
    ----------
    model, dataset : str
        Registry names (``ticketlab models``, ``ticketlab data list``).
    strategy : str
        Pruning strategy (``ticketlab strategies``).
    rate : float
        Fraction of the remaining weights (or output channels, for structured strategies) pruned per level, in
        (0, 1).
    output_rate : float or None
        Rate for the output layer with layer-wise strategies (Frankle & Carbin prune it at half the rate);
        ``None`` = ``rate``; ``0`` = the output layer is masked but never pruned.
    norm : str or None
        ``ln_structured`` only: ``"l1"``, ``"l2"`` or ``"linf"``.
    layer_rates : tuple of (pattern, rate)
        Per-tensor rates for layer-wise strategies, as fnmatch patterns on tensor names, e.g.
        ``(("convs.*", 0.1),)`` (Frankle & Carbin prune Conv-2's conv layers at 10%, its FC layers at 20%). The
        first matching pattern wins; ``output_rate`` overrides them for the output layer.
    exclude : tuple of str
        Names or fnmatch patterns of prunable tensors left dense (masked with all ones, marked not pruned).
    levels : int
        Pruning steps after the dense level 0; the file holds levels 0..levels.
    reset : str
        Reset mode; see the module docstring.
    controls : tuple of str
        Controls trained beside the chain at every pruned level (``reinit``, ``shuffle``, ``random``).
    train : TrainConfig
        Optimizer, schedule, batch size and length (iterations) of the full training schedule.
    retrain_iterations : int or None
        Retraining length R per pruned level; ``None`` = the full schedule (T, or T − K for ``rewind:K``).
    val_size : int
        Validation examples held out from the training set (5,000 as in Frankle & Carbin 2019).
    split_seed : int
        Seed of the validation split; fixed (0) by default so every run shares one split.
    augment : bool
        Random crop and flip on 32x32 colour images (standard for CIFAR ResNets and VGGs).
    seed : int
        Seeds initialisation, data order, random pruning and controls.
    data_dir : str or None
        Where datasets are read from; not part of the run's identity.
    """

    model: str = "lenet300"
    dataset: str = "mnist"
    strategy: str = "layer_magnitude"
    rate: float = 0.2
    output_rate: float | None = None
    norm: str | None = None
    layer_rates: tuple[tuple[str, float], ...] = ()
    exclude: tuple[str, ...] = ()
    levels: int = 3
    reset: str = "rewind-init"
    controls: tuple[str, ...] = ()
    train: TrainConfig = field(default_factory=TrainConfig)
    retrain_iterations: int | None = None
    val_size: int = 5000
    split_seed: int = 0
    augment: bool = False
    seed: int = 0
    data_dir: str | None = None

    def __post_init__(self) -> None:
        from ticketlab.pruning import get_strategy

        # model and dataset are registry names, or labels of the caller's own (IMPRun's model_factory and data);
        # the registries are consulted, with their lists of valid names, when IMPRun uses them
        for key in ("model", "dataset"):
            if not isinstance(getattr(self, key), str) or not getattr(self, key):
                raise ConfigError(f"{key} must be a non-empty name; got {getattr(self, key)!r}")
        strategy = get_strategy(self.strategy)
        if isinstance(self.rate, bool) or not isinstance(self.rate, (int, float)) or not 0 < self.rate < 1:
            raise ConfigError(f"rate must be a number in (0, 1) (the fraction of the remaining weights pruned "
                              f"per level); got {self.rate!r}")
        if self.output_rate is not None:
            if not 0 <= self.output_rate < 1:
                raise ConfigError(f"output_rate must be in [0, 1); got {self.output_rate!r}")
            if strategy.scope == "global" and self.output_rate > 0:
                raise ConfigError(
                    f"output_rate applies to layer-wise strategies, not {self.strategy!r}; to leave the output "
                    "layer out of global pruning use output_rate 0 (or exclude it)"
                )
        rates = []
        for item in self.layer_rates:
            try:
                pattern, r = item
                r = float(r)
            except (TypeError, ValueError):
                raise ConfigError(f"layer_rates entries must be (pattern, rate) pairs; got {item!r}") from None
            if not 0 <= r < 1:
                raise ConfigError(f"layer rate for {pattern!r} must be in [0, 1); got {r}")
            rates.append((str(pattern), r))
        object.__setattr__(self, "layer_rates", tuple(rates))
        if rates and strategy.scope == "global":
            raise ConfigError(f"layer_rates apply to layer-wise strategies, not {self.strategy!r}")
        if self.strategy == "ln_structured" and self.norm is None:
            raise ConfigError("the ln_structured strategy needs a norm: l1, l2 or linf")
        if self.norm is not None and self.strategy != "ln_structured":
            raise ConfigError(f"norm is used only by the ln_structured strategy; got it with {self.strategy!r}")
        object.__setattr__(self, "exclude", tuple(self.exclude))
        object.__setattr__(self, "controls", tuple(self.controls))
        for c in self.controls:
            if c not in CONTROLS:
                raise ConfigError(f"unknown control {c!r}; choose from: {', '.join(CONTROLS)}")
        if len(set(self.controls)) != len(self.controls):
            raise ConfigError(f"controls listed twice: {', '.join(self.controls)}")
        if isinstance(self.levels, bool) or not isinstance(self.levels, int) or self.levels < 0:
            raise ConfigError(f"levels must be an integer >= 0 (pruning steps after the dense level); got "
                              f"{self.levels!r}")
        if not isinstance(self.train, TrainConfig):
            raise ConfigError("train must be a TrainConfig")
        if self.val_size < 0:
            raise ConfigError(f"val_size must be >= 0; got {self.val_size}")
        parse_reset(self.reset)
        if self.retrain_iterations is not None and self.retrain_iterations < 1:
            raise ConfigError(f"retrain_iterations must be >= 1; got {self.retrain_iterations}")
        registered = self.steps_per_epoch()
        if registered is not None or parse_reset(self.reset)[2] != "ep":
            self.check_schedule(registered)

    def check_schedule(self, steps_per_epoch: int | None = None) -> None:
        """Refuse a rewind point at or past the end of training, or a retraining length that does not fit.

        ``steps_per_epoch`` converts ``rewind:Kep``; default: from the registry dataset's size.
        """
        mode = parse_reset(self.reset)[0]
        k = self.rewind_iteration(steps_per_epoch)
        if mode == "rewind" and k >= self.train.iterations:
            raise ConfigError(
                f"reset {self.reset} rewinds to iteration {k}, which is not before the end "
                f"of training ({self.train.iterations} iterations); choose a smaller K"
            )
        if self.retrain_iterations is not None and mode != "finetune":
            limit = self.train.iterations - k
            if not 1 <= self.retrain_iterations <= limit:
                raise ConfigError(f"retrain_iterations must be in [1, {limit}] for reset {self.reset}; got "
                                  f"{self.retrain_iterations}")

    # -- derived quantities ----------------------------------------------------------------------------------

    def steps_per_epoch(self) -> int | None:
        """Iterations per epoch of the registry dataset's training set (minus the validation hold-out); ``None``
        for a dataset that is not in the registry (IMPRun then counts the data it is given)."""
        from ticketlab.datasets import get_dataset_spec, list_datasets

        if self.dataset not in list_datasets():
            return None
        n_train = get_dataset_spec(self.dataset).train_size - self.val_size
        return steps_per_epoch(n_train, self.train.batch_size)

    def rewind_iteration(self, steps_per_epoch: int | None = None) -> int:
        """K of ``rewind:K`` in iterations (``Kep`` converted with ``steps_per_epoch``, by default from the registry
        dataset's size); 0 for other modes."""
        mode, k, unit = parse_reset(self.reset)
        if mode != "rewind":
            return 0
        if unit != "ep":
            return k
        spe = steps_per_epoch if steps_per_epoch is not None else self.steps_per_epoch()
        if spe is None:
            raise ConfigError(f"reset {self.reset} counts epochs of dataset {self.dataset!r}, whose size is not "
                              "known here; give K in iterations")
        return k * spe

    def retrain_window(self, steps_per_epoch: int | None = None) -> tuple[int, int]:
        """The iterations ``[start, stop)`` of the schedule that retraining at a pruned level runs."""
        mode, _, _ = parse_reset(self.reset)
        total = self.train.iterations
        if mode == "rewind":
            k = self.rewind_iteration(steps_per_epoch)
            return k, min(total, k + (self.retrain_iterations or total - k))
        r = self.retrain_iterations or total
        if mode == "lr-rewind":
            return total - r, total
        if mode == "finetune":
            return 0, r
        return 0, r

    def finetune_config(self) -> TrainConfig:
        """The training config of ``finetune``: R iterations at the final learning rate, no decay or warm-up."""
        final = lr_at(self.train, self.train.iterations - 1)
        r = self.retrain_iterations or self.train.iterations
        return dataclasses.replace(self.train, lr=final, schedule="constant", milestones=(), warmup_iterations=0,
                                   iterations=r)

    def method(self) -> str:
        """One-line description for ``ticketlab info``."""
        rate = f"{self.rate:.0%}/level"
        if self.layer_rates:
            rate += " (" + ", ".join(f"{p} {r:.0%}" for p, r in self.layer_rates) + ")"
        if self.output_rate is not None:
            rate += f" (output {self.output_rate:.0%})"
        extra = f", controls {'+'.join(self.controls)}" if self.controls else ""
        norm = f" {self.norm}" if self.norm else ""
        return f"IMP {self.strategy}{norm} {rate}, reset {self.reset}{extra}"

    # -- (de)serialisation -----------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["train"] = self.train.to_dict()
        d["exclude"] = list(self.exclude)
        d["layer_rates"] = [list(x) for x in self.layer_rates]
        d["controls"] = list(self.controls)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RunConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = [k for k in d if k not in names]
        if unknown:
            raise ConfigError(f"unknown run option {unknown[0]!r}; valid options: {', '.join(sorted(names))}")
        d = dict(d)
        if "train" in d and not isinstance(d["train"], TrainConfig):
            d["train"] = TrainConfig.from_dict(d["train"])
        for key in ("exclude", "controls"):
            if key in d:
                d[key] = tuple(d[key])
        if "layer_rates" in d:
            d["layer_rates"] = tuple(tuple(x) for x in d["layer_rates"])
        return cls(**d)

    def identity(self) -> dict[str, Any]:
        """The settings that must match for ``--resume`` to continue a run (everything but ``data_dir``)."""
        d = self.to_dict()
        d.pop("data_dir")
        for k, v in d.pop("train").items():  # flat, so that a refusal names the one setting that differs
            d[f"train.{k}"] = v
        return d


# ----------------------------------------------------------------------------------------------------------
# Helpers


def resolve_device(device: str) -> torch.device:
    """``"auto"`` → CUDA if available, then MPS, else CPU; other values are checked for availability."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"unknown device {device!r}; choose auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for, but this torch build sees no CUDA GPU; use --device cpu")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("--device mps was asked for, but MPS is not available here; use --device cpu")
    return dev


def _state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _masked(weights: Mapping[str, torch.Tensor], masks: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """A copy of a state dict with pruned weights set to exactly zero."""
    out = {}
    for k, v in weights.items():
        out[k] = v * torch.from_numpy(masks[k]).to(v.dtype) if k in masks else v.clone()
    return out


def _rng(seed: int, stream: int, level: int) -> np.random.Generator:
    return np.random.default_rng(derive_seed(seed, stream, level))


def _torch_weights(weights: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in weights.items()}


class Distributed:
    """The process group a run belongs to; a single process is a group of one.

    Started by ``torchrun`` (``WORLD_SIZE`` > 1 in the environment), the group is initialised with the gloo
    backend on CPU and NCCL on CUDA (one GPU per process, ``LOCAL_RANK``). Rank 0 is the *primary*: it creates
    the ticket file, prunes and writes; :meth:`on_primary` runs a function there and hands its result (or its
    error) to every rank, so all ranks train with the same mask.
    """

    def __init__(self, rank: int = 0, world: int = 1, device: torch.device | None = None, owned: bool = False
                 ) -> None:
        self.rank, self.world, self.device = rank, world, device
        self._owned = owned  # whether we initialised the process group (and so must destroy it)

    def close(self) -> None:
        """Destroy the process group if this object created it (gloo aborts at exit otherwise)."""
        if self._owned:
            import gc

            import torch.distributed as dist

            if dist.is_initialized():
                gc.collect()  # DDP reducers still referring to the group must go first
                dist.barrier()  # no rank tears down while another still talks to it
                dist.destroy_process_group()
            self._owned = False

    @classmethod
    def from_environment(cls, device: str = "auto") -> "Distributed":
        import os

        import torch.distributed as dist

        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        local = int(os.environ.get("LOCAL_RANK", "0"))
        dev = resolve_device(device)
        if dev.type == "cuda":
            dev = torch.device("cuda", local)
            torch.cuda.set_device(dev)
        owned = not dist.is_initialized()
        if owned:
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), dev, owned)

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def primary(self) -> bool:
        return self.rank == 0

    def on_primary(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on rank 0 only and return its result on every rank (re-raising its error everywhere)."""
        if not self.active:
            return fn()
        import torch.distributed as dist

        box: list[Any] = [None]
        if self.primary:
            try:
                box[0] = ("ok", fn())
            except TicketlabError as err:  # bad input: every rank reports it and exits 2
                box[0] = ("error", str(err))
        dist.broadcast_object_list(box, src=0)
        status, value = box[0]
        if status == "error":
            raise ConfigError(value)
        return value


@dataclass
class RunData:
    """The data of a run, held in memory: bring your own by building one of these.

    Attributes
    ----------
    train, val, test : (Tensor (N, ...), Tensor (N,) int64)
        Training set (without the validation examples), validation set (or ``None``: no early-stopping
        iteration is then recorded) and test set. Inputs as the model takes them; labels are class indices.
    num_classes : int
    class_names : tuple of str
    input_shape : tuple of int
        Shape of one input, e.g. ``(1, 28, 28)``.
    """

    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor] | None
    test: tuple[torch.Tensor, torch.Tensor]
    num_classes: int
    class_names: tuple[str, ...]
    input_shape: tuple[int, ...]


def load_data(config: RunConfig) -> RunData:
    """Load the dataset and carve the validation split (fixed seed ``split_seed``)."""
    from ticketlab.datasets import load_dataset, validation_split

    ds = load_dataset(config.dataset, config.data_dir)
    if config.val_size >= len(ds.train_y):
        raise ConfigError(f"val_size ({config.val_size}) must be smaller than the training set ({len(ds.train_y)})")
    train_idx, val_idx = validation_split(len(ds.train_y), config.val_size, config.split_seed)
    train_idx, val_idx = torch.from_numpy(train_idx), torch.from_numpy(val_idx)
    val = (ds.train_x[val_idx], ds.train_y[val_idx]) if config.val_size else None
    return RunData((ds.train_x[train_idx], ds.train_y[train_idx]), val, (ds.test_x, ds.test_y), ds.num_classes,
                 tuple(ds.class_names), tuple(ds.train_x.shape[1:]))


# ----------------------------------------------------------------------------------------------------------
# The run


class IMPRun:
    """One IMP run writing to one ticket file. Use :func:`run_imp`, or this class to bring your own model and data.

    Parameters
    ----------
    config : RunConfig
    path : path-like
        The ticket file.
    model_factory : callable(seed) -> nn.Module, optional
        Builds a freshly initialised model (default: the registry model of ``config.model``). torch's global
        RNG is seeded with ``seed`` before each call, so ``lambda seed: MyNet()`` is enough. Any ``nn.Module``: its Linear and Conv weights are the prunable tensors.
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
        probe = self._new_model(derive_seed(config.seed, _INIT, 0))
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
                    layer_rates=layer_rates, rng=_rng(c.seed, _PRUNE, level), **options)
        return {t.name: new.get(t.name, masks[t.name]) for t in self.tensors}

    def _shuffled(self, masks: Mapping[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
        from ticketlab.pruning import shuffle_mask

        pruned = {t.name: masks[t.name] for t in self.tensors if t.pruned}
        new = shuffle_mask(pruned, rng)
        return {t.name: new.get(t.name, masks[t.name]) for t in self.tensors}

    def _random_like(self, masks: Mapping[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
        from ticketlab.pruning import random_mask_like

        pruned = {t.name: masks[t.name] for t in self.tensors if t.pruned}
        new = random_mask_like(pruned, rng)
        return {t.name: new.get(t.name, masks[t.name]) for t in self.tensors}

    # -- training -----------------------------------------------------------------------------------------------

    def _train(self, start_weights: Mapping[str, torch.Tensor], masks: Mapping[str, np.ndarray], window: tuple[int, int],
               config: TrainConfig, desc: str, callback=None):
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
        c = self.config
        if parse_reset(c.reset)[0] == "finetune":
            return self._train(start_weights, masks, (0, c.finetune_config().iterations), c.finetune_config(), desc)
        return self._train(start_weights, masks, c.retrain_window(self.steps_per_epoch), c.train, desc)

    # -- the loop -----------------------------------------------------------------------------------------------

    def _create(self, overwrite: bool, init: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        c = self.config
        if init is None:
            init = _state_dict(self._new_model(derive_seed(c.seed, _INIT, 0)))
        config = c.to_dict()
        config["seeds"] = {
            "init": derive_seed(c.seed, _INIT, 0), "data_order": c.seed, "split": c.split_seed,
            "derivation": "every other random decision at level L draws from "
                          "ticketlab.training.derive_seed(seed, stream, L) with streams " + ", ".join(
                              f"{k}={v}" for k, v in _STREAMS.items()),
        }
        store.create(self.path, tensors=self.tensors, model=c.model, method=c.method(), config=config, seed=c.seed,
                     dataset=store.DatasetInfo(c.dataset, self.data.num_classes, self.data.class_names,
                                               self.data.test[1].numpy()),
                     init_weights=init, overwrite=overwrite)
        return init

    def _check_resumable(self) -> None:
        t = store.open_ticket(self.path)
        stored = dict(t.config)
        stored.pop("seeds", None)
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

        Under ``torchrun`` (several processes), rank 0 creates the file, prunes and writes; every rank trains its
        share of each batch (DistributedDataParallel) and receives the same mask from rank 0.
        """
        try:
            return self._run(resume, overwrite, start_mask, start_init)
        finally:
            self.dist.close()

    def _run(self, resume: bool, overwrite: bool, start_mask: Mapping[str, np.ndarray] | None,
             start_init: Mapping[str, Any] | None) -> Path:
        c, d = self.config, self.dist
        initial_masks = {t.name: np.ones(t.shape, bool) for t in self.tensors}
        if start_mask is not None:  # validated before anything is written
            from ticketlab.masks import check_masks

            initial_masks = check_masks(start_mask, self.tensors)
        if start_init is not None:
            start_init = self._check_init(start_init)

        def prepare() -> list[int]:
            if self.path.exists() and not (resume or overwrite):
                raise ConfigError(f"{self.path} already exists; use --resume to continue it or --overwrite to "
                                  "replace it")
            if resume and self.path.exists():
                self._check_resumable()
                return store.open_ticket(self.path).levels
            self._create(overwrite=overwrite, init=start_init)
            return []

        done = d.on_primary(prepare)
        with store.open_ticket(self.path) as t:
            init = _torch_weights(t.weights("init"))
        writer = store.TicketWriter(self.path) if d.primary else None
        rewind_k = c.rewind_iteration(self.steps_per_epoch) if parse_reset(c.reset)[0] == "rewind" else None

        # level 0: the dense network (or the given start mask), trained for the full schedule from θ0
        if 0 not in done:
            snapshot: dict[str, dict] = {}

            def capture(iteration: int, model: nn.Module) -> None:
                if iteration == rewind_k:
                    snapshot["rewind"] = _state_dict(model)

            start = time.perf_counter()
            trained, ev = self._train(_masked(init, initial_masks), initial_masks, (0, c.train.iterations), c.train,
                                      "level 0", callback=capture if rewind_k is not None else None)

            def write() -> None:
                if rewind_k is not None:
                    writer.write_checkpoint("rewind", snapshot["rewind"], iteration=rewind_k, overwrite=True)
                writer.write_level(0, initial_masks, evaluation=ev, weights=trained,
                                   attrs={"wall_time": time.perf_counter() - start})
                self.log(self._line(0))

            d.on_primary(write)
        rewind = None
        if rewind_k is not None:
            with store.open_ticket(self.path) as t:
                rewind = _torch_weights(t.weights("rewind"))

        for level in range(1, c.levels + 1):
            with store.open_ticket(self.path) as t:
                have_level = level in t.levels
                have_branches = set(t.branches(level)) if have_level else set()
                if have_level and have_branches >= set(c.controls):
                    continue
                prev_masks = t.masks(level - 1)
                prev_trained = _torch_weights(t.weights(level=level - 1))
                stored_masks = t.masks(level) if have_level else None
            start_weights = self._start_weights(level, init, rewind, prev_trained)
            if stored_masks is not None:
                masks = stored_masks
            else:
                def prune_level() -> dict[str, np.ndarray]:
                    m = self._prune(prev_trained, prev_masks, level)
                    return self._shuffled(m, _rng(c.seed, _SHUFFLE, level)) if c.reset == "shuffle" else m

                masks = d.on_primary(prune_level)
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

    def _check_init(self, weights: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Given initial weights as a state dict for this run's model; refuses missing keys and wrong shapes."""
        reference = _state_dict(self._new_model(0))
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

    def _start_weights(self, level: int, init, rewind, prev_trained) -> dict[str, torch.Tensor]:
        mode = parse_reset(self.config.reset)[0]
        if mode in ("rewind-init", "shuffle"):
            return init
        if mode == "rewind":
            return rewind
        if mode == "reinit":
            return _state_dict(self._new_model(derive_seed(self.config.seed, _REINIT, level)))
        return prev_trained  # lr-rewind, finetune

    def _control(self, writer: store.TicketWriter | None, control: str, level: int, masks, start_weights) -> None:
        c = self.config
        if control == "reinit":
            seed = derive_seed(c.seed, _CONTROL_REINIT, level)
            m, w = masks, _state_dict(self._new_model(seed))
        elif control == "shuffle":
            seed = derive_seed(c.seed, _CONTROL_SHUFFLE, level)
            m = self.dist.on_primary(lambda: self._shuffled(masks, np.random.default_rng(seed)))
            w = start_weights
        else:
            seed = derive_seed(c.seed, _CONTROL_RANDOM, level)
            m = self.dist.on_primary(lambda: self._random_like(masks, np.random.default_rng(seed)))
            w = _state_dict(self._new_model(derive_seed(seed, 1)))
        w = _masked(w, m)
        trained, ev = self._retrain(w, m, f"level {level} {control}")
        self.dist.on_primary(lambda: writer.write_branch(
            level, control, m, kind=control, evaluation=ev, init_weights=w, weights=trained, seed=seed,
            description=CONTROLS[control]))

    def _line(self, level: int) -> str:
        t = store.open_ticket(self.path)
        r = t.level_record(level)
        out = f"level {level}: density {r['density']:.4f}, accuracy {r['accuracy']:.4f}"
        for b in t.branches(level):
            out += f", {b} {t.level_record(level, branch=b)['accuracy']:.4f}"
        return out


def run_imp(config: RunConfig, path: str | Path, *, resume: bool = False, overwrite: bool = False,
            device: str = "auto", progress: bool | None = None, log: Callable[[str], None] | None = None,
            start_mask: Mapping[str, np.ndarray] | None = None, start_init: Mapping[str, Any] | None = None) -> Path:
    """Run IMP as configured and write every level to the ticket file at ``path``; see :class:`IMPRun`."""
    return IMPRun(config, path, device=device, progress=progress, log=log).run(
        resume=resume, overwrite=overwrite, start_mask=start_mask, start_init=start_init)
