"""Presets: the hyperparameters of the papers, by name (``ticketlab presets``), overridable flag by flag.

A preset is a flat mapping of option names to values; option names are those of ``ticketlab train``'s flags
(``--batch-size`` ↔ ``batch_size``; :data:`FLAG_OPTIONS` lists the two that differ). Lengths may be given in
iterations (``iterations``) or epochs (``epochs``); milestones and warm-up accept ``"91ep"``-style epoch values.
:func:`build_config` resolves a preset plus overrides into a :class:`~ticketlab.lottery.RunConfig`;
:func:`config_from_flags` does the same from ``ticketlab train``'s flag values. The presets are the registry
:data:`PRESETS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ticketlab.errors import ConfigError
from ticketlab.registry import Registry


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    reference: str
    options: Mapping[str, Any]


PRESETS: Registry[Preset] = Registry("preset")


def _register(name: str, description: str, reference: str, **options: Any) -> None:
    PRESETS.register(name, Preset(name, description, reference, options))


_register(
    "quickstart",
    "LeNet-300-100 on the shipped MNIST: 6 short levels at 50%/level with the reinit control; about a minute on 2 "
    "CPU cores",
    "a scaled-down Frankle & Carbin (2019) LeNet experiment",
    model="lenet300", dataset="mnist", strategy="layer_magnitude", rate=0.5, output_rate=0.25, levels=6,
    reset="rewind-init", controls=["reinit"], optimizer="adam", lr=1.2e-3, batch_size=60, iterations=2500,
    eval_every=250,
)
_register(
    "lth-lenet300",
    "LeNet-300-100/MNIST, Adam 1.2e-3, batch 60, 50K iterations, layer-wise 20% (output 10%), rewind to init",
    "Frankle & Carbin 2019, Fig. 2 and App. G",
    model="lenet300", dataset="mnist", strategy="layer_magnitude", rate=0.2, output_rate=0.1, levels=15,
    reset="rewind-init", optimizer="adam", lr=1.2e-3, batch_size=60, iterations=50_000, eval_every=100,
)
_register(
    "lth-conv2",
    "Conv-2/CIFAR-10, Adam 2e-4, batch 60, 20K iterations, conv 10%, fc 20% (output 10%), rewind to init",
    "Frankle & Carbin 2019, Fig. 2 and App. H",
    model="conv2", dataset="cifar10", strategy="layer_magnitude", rate=0.2, layer_rates=[["convs.*", 0.1]],
    output_rate=0.1, levels=20, reset="rewind-init", optimizer="adam", lr=2e-4, batch_size=60, iterations=20_000,
    eval_every=100,
)
_register(
    "lth-conv4",
    "Conv-4/CIFAR-10, Adam 3e-4, batch 60, 25K iterations, conv 10%, fc 20% (output 10%), rewind to init",
    "Frankle & Carbin 2019, Fig. 2 and App. H",
    model="conv4", dataset="cifar10", strategy="layer_magnitude", rate=0.2, layer_rates=[["convs.*", 0.1]],
    output_rate=0.1, levels=20, reset="rewind-init", optimizer="adam", lr=3e-4, batch_size=60, iterations=25_000,
    eval_every=100,
)
_register(
    "lth-conv6",
    "Conv-6/CIFAR-10, Adam 3e-4, batch 60, 30K iterations, conv 15%, fc 20% (output 10%), rewind to init",
    "Frankle & Carbin 2019, Fig. 2 and App. H",
    model="conv6", dataset="cifar10", strategy="layer_magnitude", rate=0.2, layer_rates=[["convs.*", 0.15]],
    output_rate=0.1, levels=20, reset="rewind-init", optimizer="adam", lr=3e-4, batch_size=60, iterations=30_000,
    eval_every=100,
)
_register(
    "openlth-hparams-lenet300",
    "OpenLTH's mnist_lenet_300_100 hyperparameters: SGD 0.1, batch 128, 40 epochs, global 20%, output layer not "
    "pruned; but ticketlab's count (20% of the remaining prunable weights; OpenLTH prunes ceil(20% of all remaining "
    "weights, output layer included) + 1, so its hidden layers are sparser: 3.15% vs 3.52% kept at level 15) and ticketlab's "
    "lenet300 init (Glorot, as Frankle & Carbin; OpenLTH uses Kaiming-normal)",
    "OpenLTH (facebookresearch/open_lth) default hyperparameters, not its pruning count or initialisation",
    model="lenet300", dataset="mnist", strategy="global_magnitude", rate=0.2, output_rate=0.0, levels=15,
    reset="rewind-init", optimizer="sgd", lr=0.1, batch_size=128, epochs=40, eval_every=0,
)
_register(
    "renda-resnet20",
    "ResNet-20/CIFAR-10, SGD 0.1 momentum 0.9, wd 1e-4, batch 128, 182 epochs (x0.1 at 91, 136), global 20%, "
    "learning-rate rewinding",
    "Renda, Frankle & Carbin 2020 (CIFAR-10 ResNet schedule of He et al. 2016)",
    model="resnet20", dataset="cifar10", strategy="global_magnitude", rate=0.2, levels=10, reset="lr-rewind",
    optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4, batch_size=128, epochs=182, schedule="step",
    milestones=["91ep", "136ep"], gamma=0.1, augment=True, eval_every=0,
)

DEFAULT_PRESET = "quickstart"


def default_output(preset: str | None, seed: int | str) -> Path:
    """Where ``ticketlab train`` writes a run given no ``--out``: ``runs/<preset>_seed<seed>.h5``."""
    return Path("runs") / f"{preset or DEFAULT_PRESET}_seed{seed}.h5"


#: Option names: RunConfig fields, TrainConfig fields, and `epochs`.
RUN_KEYS = {"model", "dataset", "classes", "strategy", "rate", "output_rate", "norm", "layer_rates", "exclude", "levels",
            "reset", "controls", "retrain_iterations", "val_size", "split_seed", "augment", "seed", "data_dir"}
TRAIN_KEYS = {"optimizer", "lr", "momentum", "nesterov", "weight_decay", "betas", "eps", "schedule", "milestones",
              "gamma", "warmup_iterations", "batch_size", "iterations", "eval_every"}


#: ``ticketlab train`` flags whose option has another name (``--layer-rate`` ↔ ``layer_rates``).
FLAG_OPTIONS = {"layer_rate": "layer_rates", "warmup": "warmup_iterations"}


def list_presets() -> list[Preset]:
    """Every preset, in registration order."""
    return [p for _, p in PRESETS.items()]


def get_preset(name: str) -> Preset:
    """The preset called ``name``; a one-line :class:`ConfigError` naming the presets if there is none."""
    return PRESETS.get(name)


#: Value that resets an option to its default (``--output-rate none``, ``--controls none``).
UNSET = "none"


def _is_global(strategy: str) -> bool:
    from ticketlab.pruning import STRATEGIES

    return STRATEGIES.get(strategy).pooled


def _to_iterations(value: Any, steps_per_epoch: int, what: str) -> int:
    """``500`` / ``"500"`` / ``"500it"`` → 500; ``"2ep"`` → 2 × steps per epoch."""
    text = str(value).strip()
    try:
        if text.endswith("ep"):
            return int(round(float(text[:-2]) * steps_per_epoch))
        return int(text[:-2] if text.endswith("it") else text)
    except ValueError:
        raise ConfigError(f"{what} must be iterations (e.g. 500) or epochs (e.g. 2ep); got {value!r}") from None


def build_config(preset: str | None = None, **overrides: Any):
    """Resolve a preset plus overrides (``None`` values are ignored) into a :class:`~ticketlab.lottery.RunConfig`."""
    from ticketlab.datasets import get_dataset_spec, parse_classes
    from ticketlab.lottery import RunConfig
    from ticketlab.training import TrainConfig, steps_per_epoch

    options = dict(get_preset(preset or DEFAULT_PRESET).options)
    given = {k: v for k, v in overrides.items() if v is not None}
    unknown = [k for k in given if k not in RUN_KEYS | TRAIN_KEYS | {"epochs"}]
    if unknown:
        raise ConfigError(f"unknown option {unknown[0]!r}")
    if "iterations" in given and "epochs" in given:
        raise ConfigError("give the training length as iterations or as epochs, not both")
    if "iterations" in given:
        options.pop("epochs", None)
    if "epochs" in given:
        options.pop("iterations", None)
    options.update(given)
    for key, value in list(options.items()):
        if value == UNSET:  # an explicit "none": the option's default
            del options[key]
    if "strategy" in given and _is_global(options["strategy"]):
        # a preset's layer-wise-only options do not carry over to a global strategy chosen by flag
        if "layer_rates" not in given:
            options.pop("layer_rates", None)
        if "output_rate" not in given and options.get("output_rate"):
            options.pop("output_rate")
    run = {k: v for k, v in options.items() if k in RUN_KEYS}
    tr = {k: v for k, v in options.items() if k in TRAIN_KEYS}
    def spe_of_dataset() -> int:
        """Steps per epoch: needed only to convert epochs, so only then must the dataset be a registry one."""
        name = run.get("dataset", RunConfig.dataset)
        try:
            spec = get_dataset_spec(name)
        except ConfigError as err:
            raise ConfigError(f"{err}. Lengths in epochs need the training set's size, known for these datasets; "
                              f"for your own data give iterations") from None
        val_size = run.get("val_size", RunConfig.val_size)
        n_train = spec.train_size_of(parse_classes(run.get("classes")))  # a class subset has fewer examples
        return steps_per_epoch(n_train - val_size, tr.get("batch_size", TrainConfig.batch_size))

    uses_epochs = "epochs" in options or any(str(v).strip().endswith("ep") for v in
                                             [*tr.get("milestones", ()), tr.get("warmup_iterations", "")])
    spe = spe_of_dataset() if uses_epochs else 1
    if "epochs" in options:
        epochs = float(options["epochs"])
        if epochs <= 0:
            raise ConfigError(f"epochs must be > 0; got {options['epochs']!r}")
        tr["iterations"] = max(1, int(round(epochs * spe)))
    if "milestones" in tr:
        tr["milestones"] = tuple(_to_iterations(m, spe, "milestones") for m in tr["milestones"])
    if "warmup_iterations" in tr:
        tr["warmup_iterations"] = _to_iterations(tr["warmup_iterations"], spe, "warm-up")
    if tr.get("optimizer", "sgd") != "sgd" and "momentum" in tr and tr["momentum"] == 0:
        tr.pop("momentum")
    run["train"] = TrainConfig(**tr)
    if "layer_rates" in run:
        run["layer_rates"] = tuple(tuple(x) for x in run["layer_rates"])
    for key in ("exclude", "controls"):
        if key in run:
            run[key] = tuple(run[key])
    return RunConfig(**run)  # classes (a list, or text such as "0-4") is parsed by RunConfig


def config_from_flags(preset: str | None, flags: Mapping[str, Any]):
    """:func:`build_config` from ``ticketlab train`` flag values, keyed by flag (``layer_rate``, ``warmup``, ...)."""
    return build_config(preset, **{FLAG_OPTIONS.get(k, k): v for k, v in flags.items()})


def preset_as_flags(preset: Preset) -> str:
    """The preset as ``ticketlab train`` flags that are equivalent to ``--preset NAME`` on their own.

    Flags apply on top of the default preset, so options it sets and this preset does not are reset with
    ``none``.
    """
    parts = []
    defaults = get_preset(DEFAULT_PRESET).options
    lengths = {"iterations", "epochs"}
    for k in defaults:
        if k not in preset.options and not (k in lengths and lengths & set(preset.options)):
            parts.append(f"--{k.replace('_', '-')} {UNSET}")
    for k, v in preset.options.items():
        flag = "--" + k.replace("_", "-")
        if isinstance(v, bool):
            parts.append(flag if v else "")
        elif k == "layer_rates":
            parts += [f"--layer-rate {p}={r}" for p, r in v]
        elif isinstance(v, (list, tuple)):
            parts.append(f"{flag} {','.join(map(str, v))}")
        else:
            parts.append(f"{flag} {v}")
    return " ".join(p for p in parts if p)
