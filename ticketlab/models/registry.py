"""The model registry: :data:`MODELS` (a :class:`~ticketlab.registry.Registry` of :class:`ModelSpec`, each carrying
its factory); :func:`register_model` fills it, :func:`create_model` builds from it."""

from __future__ import annotations

import difflib
import numbers
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import nn

from ticketlab.errors import ConfigError
from ticketlab.registry import Registry

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
    factory : callable
        ``factory(num_classes=..., input_shape=...) -> nn.Module``; call :func:`create_model` rather than this.
    """

    name: str
    input_shape: Shape
    description: str
    reference: str
    factory: Callable[..., nn.Module] | None = field(default=None, repr=False, compare=False)


class _ModelRegistry(Registry[ModelSpec]):
    """Models are kept sorted by name and looked up case-sensitively; a wrong case still gets its suggestion
    ("VGG16" → did you mean 'vgg16'?)."""

    def register(self, name: str, entry: ModelSpec | None = None, **kwargs):
        registered = super().register(name, entry, **kwargs)
        if entry is not None:
            self._entries = dict(sorted(self._entries.items()))
        return registered

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(str(name).lower(), self.names(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown {self.kind} {name!r}; choose one of: {self.choices()}{hint}"


#: Every registered model, by name.
MODELS: Registry[ModelSpec] = _ModelRegistry("model")


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
    if name in MODELS:
        raise ConfigError(f"model {name!r} is already registered; choose another name")
    shape = _check_shape(input_shape, name)

    def decorator(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in MODELS:
            raise ConfigError(f"model {name!r} is already registered; choose another name")
        MODELS.register(name, ModelSpec(name, shape, description, reference, factory=fn))
        return fn

    return decorator


def list_models() -> list[ModelSpec]:
    """All registered models, sorted by name.

    Returns
    -------
    list of ModelSpec
    """
    return [MODELS.get(name) for name in MODELS.names()]


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
    return MODELS.get(name)


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
        return spec.factory(num_classes=num_classes, input_shape=shape)
    except ConfigError as err:
        raise ConfigError(f"model {name!r}: {err} (it is designed for inputs of shape {spec.input_shape})") from None


def _check_shape(shape: object, name: str) -> Shape:
    items = list(shape) if isinstance(shape, (tuple, list, torch.Size)) else []
    if not items or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) and s > 0 for s in items):
        raise ConfigError(f"input shape for {name!r} must be positive integers such as (3, 32, 32); got {shape!r}")
    return tuple(int(s) for s in items)
