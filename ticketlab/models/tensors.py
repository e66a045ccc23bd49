"""Which tensors of a model masks cover, under canonical parameter names."""

from __future__ import annotations

import fnmatch
from typing import Iterable

from torch import nn
from torch.nn.utils import parametrize

from ticketlab.errors import ConfigError
from ticketlab.masks import TensorInfo

_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DataParallel / DistributedDataParallel, torch.compile


def canonical_name(name: str) -> str:
    """Strip leading wrapper prefixes ``module.`` (DataParallel/DDP) and ``_orig_mod.`` (torch.compile).

    Parameters
    ----------
    name : str
        A parameter or state-dict name, e.g. ``"module._orig_mod.fc.weight"``.

    Returns
    -------
    str
        The name in the unwrapped model, e.g. ``"fc.weight"``; prefixes are only stripped from the front.
    """
    stripped = True
    while stripped:
        stripped = False
        for prefix in _WRAPPER_PREFIXES:
            if name.startswith(prefix):
                name, stripped = name[len(prefix):], True
    return name


_KINDS = ((nn.Linear, "linear"), ((nn.Conv1d, nn.Conv2d, nn.Conv3d), "conv"))


def _weight_tensors(model: nn.Module) -> list[tuple[str, tuple[int, ...], str]]:
    """``(canonical name, shape, kind)`` of every Linear/Conv weight, in ``named_parameters()`` order."""
    owners: dict[int, tuple[str, str]] = {}  # id(parameter) -> (canonical name, kind)
    for mod_name, module in model.named_modules():
        kind = next((k for types, k in _KINDS if isinstance(module, types)), None)
        if kind is None:
            continue
        if isinstance(getattr(module, "weight_orig", None), nn.Parameter):  # torch.nn.utils.prune
            param = module.weight_orig
        elif parametrize.is_parametrized(module, "weight"):
            param = module.parametrizations.weight.original
        else:
            param = module.weight
        owners[id(param)] = (canonical_name(f"{mod_name}.weight" if mod_name else "weight"), kind)
    found = []
    for _, param in model.named_parameters():
        if id(param) in owners:
            name, kind = owners[id(param)]
            found.append((name, tuple(param.shape), kind))
    return found


def prunable_tensors(model: nn.Module, exclude: Iterable[str] | str = ()) -> list[TensorInfo]:
    """The weights that masks cover: every ``nn.Linear`` and ``nn.Conv1d/2d/3d`` weight.

    Biases and BatchNorm parameters are never listed. Weights already re-parametrised by
    ``torch.nn.utils.prune`` (``weight_orig``) or ``torch.nn.utils.parametrize`` are listed under their
    plain name ``<module>.weight``.

    Parameters
    ----------
    model : torch.nn.Module
        Possibly wrapped in DataParallel/DDP or ``torch.compile``; the prefixes are stripped from names.
    exclude : iterable of str, or str
        Names (or ``fnmatch`` patterns, e.g. ``"fc.*"``) of tensors to leave unpruned: they are still
        listed, with ``pruned=False``.

    Returns
    -------
    list of TensorInfo
        In ``model.named_parameters()`` order; ``shape`` is the weight's shape, ``kind`` is ``"linear"`` or
        ``"conv"``.

    Raises
    ------
    ConfigError
        If an ``exclude`` entry matches no prunable tensor (the message lists them).
    """
    found = _weight_tensors(model)
    names = [name for name, _, _ in found]
    patterns = [exclude] if isinstance(exclude, str) else list(exclude)
    excluded: set[str] = set()
    for pattern in patterns:
        if not isinstance(pattern, str):
            raise ConfigError(f"exclude entries must be tensor names or patterns; got {pattern!r}")
        hits = [name for name in names if fnmatch.fnmatchcase(name, canonical_name(pattern))]
        if not hits:
            raise ConfigError(
                f"exclude entry {pattern!r} matches no prunable tensor; the prunable tensors are: {', '.join(names)}"
            )
        excluded.update(hits)
    return [TensorInfo(name, shape, kind, pruned=name not in excluded) for name, shape, kind in found]


def output_layer(model: nn.Module) -> str:
    """Canonical name of the last ``nn.Linear`` weight in ``named_parameters()`` order.

    Parameters
    ----------
    model : torch.nn.Module
        Possibly wrapped (see :func:`prunable_tensors`).

    Returns
    -------
    str
        E.g. ``"fc.weight"`` for every registered model.

    Raises
    ------
    ConfigError
        If the model has no Linear layer.
    """
    linear = [name for name, _, kind in _weight_tensors(model) if kind == "linear"]
    if not linear:
        raise ConfigError(f"{type(model).__name__} has no nn.Linear layer, so it has no output layer to name")
    return linear[-1]
