"""Checks of the arrays the fairness analyses take: class names and accuracy matrices."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ticketlab.errors import ConfigError


def class_names_or_indices(num_classes: int, class_names: Sequence[str] | None) -> list[str]:
    """One name per class: the given names as strings, or the class indices as strings when none are given."""
    if class_names is None or len(class_names) == 0:
        return [str(c) for c in range(num_classes)]
    if len(class_names) != num_classes:
        raise ConfigError(f"{len(class_names)} class names for {num_classes} classes; give one name per class")
    return [str(n) for n in class_names]



def as_matrix(name: str, value: np.ndarray, ndim: int) -> np.ndarray:
    """``value`` as a float64 array of ``ndim`` dimensions (one fewer is promoted); a ConfigError otherwise."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == ndim - 1:
        arr = arr[None]
    if arr.ndim != ndim:
        raise ConfigError(f"{name} must be {ndim}-D; got shape {arr.shape}")
    return arr

