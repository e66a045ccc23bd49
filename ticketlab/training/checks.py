"""Argument checks shared by the training modules: integers and finite numbers, with one-line errors."""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

from ticketlab.errors import ConfigError

__all__ = ["check_float", "check_int"]


def check_int(name: str, value: Any, minimum: int | None = None) -> int:
    """``value`` as an int (integral floats accepted, bools refused), at least ``minimum`` if given."""
    if isinstance(value, bool) or not isinstance(value, (Integral, Real)) or (
        isinstance(value, Real) and not float(value).is_integer()
    ):
        raise ConfigError(f"{name} must be an integer; got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}; got {value}")
    return value


def check_float(name: str, value: Any) -> float:
    """``value`` as a finite float (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)):
        raise ConfigError(f"{name} must be a finite number; got {value!r}")
    return float(value)
