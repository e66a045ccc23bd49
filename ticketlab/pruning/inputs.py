"""Validation and conversion of what a pruning call is given: rates, weights and masks."""

from __future__ import annotations

import math
import numbers
from typing import Any, Mapping

import numpy as np
import torch

from ticketlab.errors import ConfigError
from ticketlab.masks import as_bool_mask

__all__ = ["check_inputs", "check_rate", "kept_magnitudes", "to_numpy_weight"]


def check_rate(value: Any, what: str, *, allow_zero: bool) -> float:
    interval = "[0, 1)" if allow_zero else "(0, 1)"
    ok = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
    if ok:
        value = float(value)
        ok = math.isfinite(value) and (0.0 <= value if allow_zero else 0.0 < value) and value < 1.0
    if not ok:
        raise ConfigError(
            f"{what} must be a number in {interval}, the fraction of the remaining weights (or channels) "
            f"pruned at one level; got {value!r}"
        )
    return value


def to_numpy_weight(name: str, value: Any) -> np.ndarray:
    """A weight tensor as a numpy array of a real dtype, without copying float32/float64 CPU tensors."""
    if isinstance(value, torch.Tensor):
        t = value.detach()
        if t.is_complex():
            raise ConfigError(f"weights for {name!r} are complex ({t.dtype}); pruning needs real weights")
        if t.dtype == torch.bool:
            raise ConfigError(f"weights for {name!r} are booleans; pass the weight values, not a mask")
        if t.dtype not in (torch.float32, torch.float64, torch.float16) and t.is_floating_point():
            t = t.to(torch.float64)  # bfloat16, float8: numpy cannot hold them; the conversion is exact
        arr = t.cpu().numpy()
    else:
        arr = np.asarray(value)
    if arr.dtype.kind not in "fiu":
        raise ConfigError(f"weights for {name!r} have dtype {arr.dtype}; pruning needs real-valued weights")
    return arr


def check_inputs(
    weights: Mapping[str, Any], masks: Mapping[str, Any]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    if not isinstance(masks, Mapping) or not isinstance(weights, Mapping):
        raise ConfigError("weights and masks must be mappings from tensor name to array")
    if not masks:
        raise ConfigError("no tensors to prune: masks is empty")
    missing = [name for name in masks if name not in weights]
    if missing:
        raise ConfigError(
            f"no weights given for masked tensor {missing[0]!r}; weights and masks must name the same tensors "
            f"(missing weights: {', '.join(map(repr, missing))})"
        )
    extra = [name for name in weights if name not in masks]
    if extra:
        raise ConfigError(
            f"weights given for tensor {extra[0]!r} that has no mask; weights and masks must name the same "
            f"tensors (unmasked: {', '.join(map(repr, extra))})"
        )
    out_w: dict[str, np.ndarray] = {}
    out_m: dict[str, np.ndarray] = {}
    for name in masks:
        w = to_numpy_weight(name, weights[name])
        m = as_bool_mask(name, masks[name])
        if w.shape != m.shape:
            raise ConfigError(f"mask for {name!r} has shape {m.shape} but its weights have shape {w.shape}")
        out_w[name] = w
        out_m[name] = m
    return out_w, out_m


def kept_magnitudes(name: str, w: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``|w|`` of the kept entries, float64, in C order; raises on NaN among them."""
    vals = w[m].astype(np.float64, copy=False)  # boolean indexing already copied: safe to work in place
    np.abs(vals, out=vals)
    if np.isnan(vals).any():
        raise ConfigError(f"weights for {name!r} contain NaN among the kept entries; cannot rank by magnitude")
    return vals
