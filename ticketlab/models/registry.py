"""The model registry: :func:`register_model` fills it, :func:`create_model` builds from it."""

from __future__ import annotations

import difflib
import numbers
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from ticketlab.errors import ConfigError

Shape = tuple[int, ...]


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows about one model.

    Attributes
    ----------
    name : str
        Registry name, e.g. ``"resnet20"``.
    input_shape : tuple of int
        Input shape ``(C, H, W)`` (channels, height, width in pixels) the model is designed for; other shapes
        may be passed to :func:`create_model` where the architecture allows.
    description : str
        One line describing the layers.
    reference : str
        The paper (and code) the architecture follows.
    """

    name: str
    input_shape: Shape
    description: str
    reference: str


_REGISTRY: dict[str, tuple[ModelSpec, Callable[..., nn.Module]]] = {}


def register_model(name: str, *, input_shape: Sequence[int], description: str, reference: str):
    """Decorator adding a factory ``fn(num_classes: int = 10, input_shape=None) -> nn.Module`` to the registry.

    Parameters
    ----------
    name : str
        Registry name; must be new (a duplicate raises :class:`ConfigError`).
    input_shape : sequence of int
        Designed input shape ``(C, H, W)``; :func:`create_model` passes it to the factory when the caller
        gives none.
    description, reference : str
        Shown by ``list_models`` (and the CLI).

    Returns
    -------
    callable
        The decorator; it returns the factory unchanged.
    """
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"model name must be a non-empty string; got {name!r}")
    if name in _REGISTRY:
        raise ConfigError(f"model {name!r} is already registered; choose another name")
    spec = ModelSpec(name, _check_shape(input_shape, name), description, reference)

    def decorator(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ConfigError(f"model {name!r} is already registered; choose another name")
        _REGISTRY[name] = (spec, fn)
        return fn

    return decorator


def list_models() -> list[ModelSpec]:
    """All registered models, sorted by name.

    Returns
    -------
    list of ModelSpec
    """
    return [_REGISTRY[name][0] for name in sorted(_REGISTRY)]


def get_model_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` registered as ``name``.

    Parameters
    ----------
    name : str
        Registry name.

    Returns
    -------
    ModelSpec

    Raises
    ------
    ConfigError
        For an unknown name; the message lists the valid names and a close match if there is one.
    """
    if name not in _REGISTRY:
        names = sorted(_REGISTRY)
        message = f"unknown model {name!r}; choose one of: {', '.join(names)}"
        close = difflib.get_close_matches(str(name).lower(), names, n=1)
        raise ConfigError(message + (f" (did you mean {close[0]!r}?)" if close else ""))
    return _REGISTRY[name][0]


def create_model(name: str, num_classes: int = 10, input_shape: Sequence[int] | None = None) -> nn.Module:
    """Build a freshly initialised model.

    Initialisation draws from torch's global generator, so ``torch.manual_seed(s)`` before the call makes
    the weights reproducible.

    Parameters
    ----------
    name : str
        Registry name (see :func:`list_models`).
    num_classes : int
        Number of outputs (logits) of the last layer.
    input_shape : sequence of int, optional
        Input shape ``(C, H, W)`` of one example; defaults to the model's designed shape.

    Returns
    -------
    torch.nn.Module
        In training mode, on the CPU, float32. ``model(x)`` maps ``(batch, *input_shape)`` to
        ``(batch, num_classes)`` logits.

    Raises
    ------
    ConfigError
        Unknown name, ``num_classes < 1``, or an input shape the architecture cannot process.
    """
    spec = get_model_spec(name)
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive integer; got {num_classes!r}")
    num_classes = int(num_classes)
    shape = spec.input_shape if input_shape is None else _check_shape(input_shape, name)
    try:
        return _REGISTRY[name][1](num_classes=num_classes, input_shape=shape)
    except ConfigError as err:
        raise ConfigError(f"model {name!r}: {err} (it is designed for inputs of shape {spec.input_shape})") from None


def _check_shape(shape: object, name: str) -> Shape:
    items = list(shape) if isinstance(shape, (tuple, list, torch.Size)) else []
    if not items or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) and s > 0 for s in items):
        raise ConfigError(f"input shape for {name!r} must be positive integers such as (3, 32, 32); got {shape!r}")
    return tuple(int(s) for s in items)
