"""RunConfig: everything that defines an IMP run, validated on construction, and its derived quantities.

Which part of the schedule a pruned level retrains, and with which optimizer settings, is the reset mode's
(:mod:`ticketlab.lottery.resets`); :class:`RunConfig` asks its entry (:attr:`RunConfig.reset_mode`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from ticketlab.errors import ConfigError
from ticketlab.lottery.resets import CONTROLS, ResetMode, resolve_reset
from ticketlab.training import TrainConfig, steps_per_epoch


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
        Reset mode: a name of :data:`~ticketlab.lottery.resets.RESET_MODES` (``rewind:K`` with a number K).
    controls : tuple of str
        Controls trained beside the chain at every pruned level (:data:`~ticketlab.lottery.resets.CONTROLS`).
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
    classes : tuple of int
        A class-subset task (``--classes 0-4``; :mod:`ticketlab.datasets.subsets`): the original ids of the classes
        whose training, validation and test examples are kept, labels renumbered 0 .. k−1 so the output layer has
        k units. Given as ids, or as text such as ``"0-4"`` or ``"0,2,4"``; stored sorted. Empty (default): every
        class. :func:`~ticketlab.lottery.load_data` applies it to a registry dataset; restrict your own
        :class:`~ticketlab.lottery.RunData` with :func:`ticketlab.datasets.select_classes`.
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
    classes: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        from ticketlab.datasets import check_classes, classes_text, get_dataset_spec, list_datasets, parse_classes
        from ticketlab.pruning import STRATEGIES

        # model and dataset are registry names, or labels of the caller's own (IMPRun's model_factory and data);
        # the registries are consulted, with their lists of valid names, when IMPRun uses them
        for key in ("model", "dataset"):
            if not isinstance(getattr(self, key), str) or not getattr(self, key):
                raise ConfigError(f"{key} must be a non-empty name; got {getattr(self, key)!r}")
        strategy = STRATEGIES.get(self.strategy)
        if isinstance(self.rate, bool) or not isinstance(self.rate, (int, float)) or not 0 < self.rate < 1:
            raise ConfigError(f"rate must be a number in (0, 1) (the fraction of the remaining weights pruned "
                              f"per level); got {self.rate!r}")
        if self.output_rate is not None:
            if not 0 <= self.output_rate < 1:
                raise ConfigError(f"output_rate must be in [0, 1); got {self.output_rate!r}")
            if strategy.pooled and self.output_rate > 0:
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
        if rates and strategy.pooled:
            raise ConfigError(f"layer_rates apply to layer-wise strategies, not {self.strategy!r}")
        # the strategy's entry says whether it takes (or requires) the norm option
        if "norm" in strategy.required_options and self.norm is None:
            raise ConfigError(f"the {self.strategy} strategy needs a norm: l1, l2 or linf")
        if self.norm is not None and "norm" not in strategy.options:
            users = [name for name, s in STRATEGIES.items() if "norm" in s.options]
            which = f"the {users[0]} strategy" if len(users) == 1 else f"the strategies {', '.join(users)}"
            raise ConfigError(f"norm is used only by {which}; got it with {self.strategy!r}")
        object.__setattr__(self, "exclude", tuple(self.exclude))
        object.__setattr__(self, "controls", tuple(self.controls))
        for c in self.controls:
            if c not in CONTROLS:
                raise ConfigError(f"unknown control {c!r}; choose from: {CONTROLS.choices()}")
        if len(set(self.controls)) != len(self.controls):
            raise ConfigError(f"controls listed twice: {', '.join(self.controls)}")
        if isinstance(self.levels, bool) or not isinstance(self.levels, int) or self.levels < 0:
            raise ConfigError(f"levels must be an integer >= 0 (pruning steps after the dense level); got "
                              f"{self.levels!r}")
        if not isinstance(self.train, TrainConfig):
            raise ConfigError("train must be a TrainConfig")
        if self.val_size < 0:
            raise ConfigError(f"val_size must be >= 0; got {self.val_size}")
        object.__setattr__(self, "classes", parse_classes(self.classes))
        if self.classes and self.dataset in list_datasets():
            spec = get_dataset_spec(self.dataset)
            check_classes(self.classes, spec.num_classes, self.dataset)
            n_train = spec.train_size_of(self.classes)
            if self.val_size >= n_train:
                raise ConfigError(f"val_size ({self.val_size}) must be smaller than the {n_train:,} training "
                                  f"examples of classes {classes_text(self.classes)} of {self.dataset}; "
                                  "choose a smaller --val-size")
        _, _, unit = resolve_reset(self.reset)
        if self.retrain_iterations is not None and self.retrain_iterations < 1:
            raise ConfigError(f"retrain_iterations must be >= 1; got {self.retrain_iterations}")
        registered = self.steps_per_epoch()
        if registered is not None or unit != "ep":
            self.check_schedule(registered)

    def check_schedule(self, steps_per_epoch: int | None = None) -> None:
        """Refuse a rewind point at or past the end of training, or a retraining length that does not fit.

        ``steps_per_epoch`` converts ``rewind:Kep``; default: from the registry dataset's size.
        """
        k = self.rewind_iteration(steps_per_epoch)
        self.reset_mode.check(self, k)
        limit = self.reset_mode.retrain_limit(self, k)
        if self.retrain_iterations is not None and limit is not None:
            if not 1 <= self.retrain_iterations <= limit:
                raise ConfigError(f"retrain_iterations must be in [1, {limit}] for reset {self.reset}; got "
                                  f"{self.retrain_iterations}")

    # -- derived quantities ----------------------------------------------------------------------------------

    @property
    def reset_mode(self) -> ResetMode:
        """The registry entry of :attr:`reset`, which carries the mode's behaviour."""
        return resolve_reset(self.reset)[0]

    @property
    def task(self) -> str:
        """The data the run learns: ``"mnist"``, or ``"mnist[0-4]"`` for a class subset (the name in the ticket
        file's dataset record)."""
        from ticketlab.datasets import task_name

        return task_name(self.dataset, self.classes)

    def steps_per_epoch(self) -> int | None:
        """Iterations per epoch of the registry dataset's training set (of the classes of a class subset, minus the
        validation hold-out); ``None`` for a dataset that is not in the registry (IMPRun then counts the data it is
        given)."""
        from ticketlab.datasets import get_dataset_spec, list_datasets

        if self.dataset not in list_datasets():
            return None
        n_train = get_dataset_spec(self.dataset).train_size_of(self.classes) - self.val_size
        return steps_per_epoch(n_train, self.train.batch_size)

    def rewind_iteration(self, steps_per_epoch: int | None = None) -> int:
        """K of ``rewind:K`` in iterations (``Kep`` converted with ``steps_per_epoch``, by default from the registry
        dataset's size); 0 for other modes."""
        _, k, unit = resolve_reset(self.reset)
        if k is None:
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
        return self.reset_mode.window(self, self.rewind_iteration(steps_per_epoch))

    def retrain_config(self) -> TrainConfig:
        """The training config (optimizer, learning-rate schedule, length) of retraining at a pruned level."""
        return self.reset_mode.train_config(self)

    def finetune_config(self) -> TrainConfig:
        """The training config of ``finetune``: R iterations at the final learning rate, no decay or warm-up."""
        from ticketlab.lottery.resets import RESET_MODES

        return RESET_MODES.get("finetune").train_config(self)

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
        d["classes"] = list(self.classes)
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
        for key in ("exclude", "controls", "classes"):
            if key in d:
                d[key] = tuple(d[key])
        if "layer_rates" in d:
            d["layer_rates"] = tuple(tuple(x) for x in d["layer_rates"])
        return cls(**d)

    def identity(self) -> dict[str, Any]:
        """The settings that must match for ``--resume`` to continue a run (everything but ``data_dir``)."""
        d = self.to_dict()
        d.pop("data_dir")
        if not d["classes"]:  # files made before class subsets existed record none
            d.pop("classes")
        for k, v in d.pop("train").items():  # flat, so that a refusal names the one setting that differs
            d[f"train.{k}"] = v
        return d
