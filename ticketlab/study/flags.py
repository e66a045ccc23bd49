"""``ticketlab train`` flags as values: the conversion from ``--flag VALUE`` to :func:`ticketlab.presets.build_config`.

A study spec names its axes and overrides by the train flags without their dashes (``seed``, ``reset``,
``eval-every``; ``eval_every`` is accepted too). TOML values arrive typed (``seed = 0``, ``rate = 0.2``,
``controls = ["reinit", "random"]``) or as the text one would type after the flag (``controls = "reinit,random"``,
``layer-rate = "convs.*=0.1"``, ``milestones = "91ep,136ep"``); both give the same option value.

:data:`FLAGS` is the table (flag → value parser); :func:`flag_values` keys parsed values the way
:func:`ticketlab.presets.config_from_flags` (the one flag → option conversion, shared with ``ticketlab train``)
takes them. The parsers mirror the ``type=`` functions of ``ticketlab/cli/train.py``, extended to TOML's typed
values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from ticketlab.errors import ConfigError
from ticketlab.registry import Registry

#: Value that resets an option to its default, as in ``--controls none``.
UNSET = "none"


def _int(v: Any) -> int:
    if isinstance(v, bool):
        raise ValueError
    if isinstance(v, int):
        return v
    if isinstance(v, str) and v.strip().lstrip("-").isdigit():
        return int(v)
    raise ValueError


def _float(v: Any) -> float:
    if isinstance(v, bool):
        raise ValueError
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        return float(v)
    raise ValueError


def _str(v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ValueError
    return v.strip()


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    raise ValueError


def _csv(v: Any) -> list[str] | str:
    """``"a,b"`` or ``["a", "b"]`` → ``["a", "b"]``; ``"none"`` (or ``[]``) → ``"none"`` (the default)."""
    if isinstance(v, str):
        if v.strip().lower() == UNSET:
            return UNSET
        return [x.strip() for x in v.split(",") if x.strip()]
    if isinstance(v, list) and all(isinstance(x, (str, int)) and not isinstance(x, bool) for x in v):
        return [str(x).strip() for x in v] if v else UNSET
    raise ValueError


def _strings(v: Any) -> list[str]:
    """A repeatable flag (``--exclude A --exclude B``): one string or a list of strings."""
    if isinstance(v, str):
        return [_str(v)]
    if isinstance(v, list) and v and all(isinstance(x, str) for x in v):
        return [_str(x) for x in v]
    raise ValueError


def _rate_or_none(v: Any) -> float | str:
    if isinstance(v, str) and v.strip().lower() == UNSET:
        return UNSET
    return _float(v)


def _layer_rate(item: Any) -> list:
    if isinstance(item, str):
        pattern, sep, rate = item.rpartition("=")
        if not sep or not pattern:
            raise ValueError
        return [pattern, float(rate)]
    if isinstance(item, list) and len(item) == 2 and isinstance(item[0], str):
        return [item[0], _float(item[1])]
    raise ValueError


def _layer_rates(v: Any) -> list[list]:
    """``"convs.*=0.1"``, ``["convs.*=0.1", "fc.*=0.2"]`` or ``[["convs.*", 0.1]]``."""
    if isinstance(v, list) and v and not (len(v) == 2 and isinstance(v[0], str) and not isinstance(v[1], str)):
        return [_layer_rate(x) for x in v]
    return [_layer_rate(v)]


def _classes(v: Any) -> str:
    """A class subset as ``--classes`` takes it: ``"0-4"``, ``"0,2,4"``, ``"none"`` or a list of ids ``[0, 2, 4]``
    (checked against the dataset when the chain's config is built)."""
    if isinstance(v, list) and v and all(isinstance(x, int) and not isinstance(x, bool) for x in v):
        return ",".join(str(x) for x in v)
    return _str(v)


#: ``--norm`` choices (``ticketlab/cli/train.py``).
NORMS = ("l1", "l2", "linf")


def _norm(v: Any) -> str:
    """A norm of ``ln_structured`` pruning, as ``--norm`` takes it: one of :data:`NORMS`."""
    if v not in NORMS:
        raise ValueError
    return v


def _length(v: Any) -> int | str:
    """Iterations (``500``) or epochs (``"2ep"``), as ``--warmup`` takes them."""
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    return _str(v)


@dataclass(frozen=True)
class Flag:
    """One ``ticketlab train`` flag: how its value is read, and what it expects (for messages)."""

    parse: Callable[[Any], Any]
    expects: str


FLAGS: Registry[Flag] = Registry("train flag", normalise=lambda s: s.replace("_", "-").lower())
for _name, _flag in {
    "preset": Flag(_str, "a preset name"),
    "device": Flag(_str, "auto, cpu, cuda, cuda:N or mps"),
    "model": Flag(_str, "a model name"),
    "dataset": Flag(_str, "a dataset name"),
    "classes": Flag(_classes, "class ids such as '0-4', '0,2,4' or [0, 2, 4]"),
    "data-dir": Flag(_str, "a directory"),
    "val-size": Flag(_int, "an integer"),
    "augment": Flag(_bool, "true or false"),
    "strategy": Flag(_str, "a pruning strategy name"),
    "rate": Flag(_float, "a number"),
    "output-rate": Flag(_rate_or_none, "a number or 'none'"),
    "layer-rate": Flag(_layer_rates, "'PATTERN=RATE' or a list of them"),
    "norm": Flag(_norm, "l1, l2 or linf"),
    "exclude": Flag(_strings, "a pattern or a list of patterns"),
    "levels": Flag(_int, "an integer"),
    "reset": Flag(_str, "a reset mode"),
    "controls": Flag(_csv, "a list of controls, 'a,b' or 'none'"),
    "retrain-iterations": Flag(_int, "an integer"),
    "seed": Flag(_int, "an integer"),
    "optimizer": Flag(_str, "sgd, adam or adamw"),
    "lr": Flag(_float, "a number"),
    "momentum": Flag(_float, "a number"),
    "nesterov": Flag(_bool, "true or false"),
    "weight-decay": Flag(_float, "a number"),
    "schedule": Flag(_str, "constant, step or cosine"),
    "milestones": Flag(_csv, "a list of iterations (or e.g. '91ep')"),
    "gamma": Flag(_float, "a number"),
    "warmup": Flag(_length, "iterations or e.g. '2ep'"),
    "batch-size": Flag(_int, "an integer"),
    "iterations": Flag(_int, "an integer"),
    "epochs": Flag(_float, "a number"),
    "eval-every": Flag(_int, "an integer"),
}.items():
    FLAGS.register(_name, _flag)
del _name, _flag


def canonical_flag(name: str, where: str = "") -> str:
    """``"eval_every"`` → ``"eval-every"``; an unknown name is a one-line :class:`ConfigError`."""
    try:
        return FLAGS.canonical(name)
    except ConfigError as err:
        raise ConfigError(f"{where}{err}") from None


def parse_flag(name: str, value: Any, where: str = "") -> Any:
    """The option value of ``--name value`` (``value`` as TOML gives it); ``where`` prefixes errors."""
    flag = FLAGS.get(canonical_flag(name, where))
    try:
        return flag.parse(value)
    except (ValueError, TypeError):
        raise ConfigError(f"{where}{name} must be {flag.expects}; got {value!r}") from None


def flag_values(flags: Mapping[str, Any]) -> dict[str, Any]:
    """``{"eval-every": 0}`` → ``{"eval_every": 0}``: parsed flag values keyed as
    :func:`ticketlab.presets.config_from_flags` takes them (argparse's ``dest`` names). ``preset`` and
    ``device`` are not options of a run's config and must be taken out first."""
    out = {canonical_flag(name).replace("-", "_"): value for name, value in flags.items()}
    if "preset" in out or "device" in out:
        raise ValueError("preset and device are not options of a run's config")
    return out
