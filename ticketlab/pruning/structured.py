"""Structured strategies: whole output channels (slices ``w[c]`` along dim 0) pruned by Ln norm or at random."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from ticketlab.errors import ConfigError
from ticketlab.pruning.counts import count_to_prune, random_k, smallest_k
from ticketlab.pruning.registry import register_strategy


def _check_structured(name: str, m: np.ndarray) -> None:
    if m.ndim < 2:
        raise ConfigError(
            f"structured pruning needs a tensor with at least 2 dimensions (output channels along dim 0); "
            f"{name!r} has shape {m.shape}; leave it out of the pruned tensors or use an unstructured strategy"
        )


_NORMS = {"l1": 1.0, "l2": 2.0, "linf": math.inf}


def _parse_norm(norm: Any) -> float:
    if isinstance(norm, str):
        key = norm.strip().lower()
        if key in _NORMS:
            return _NORMS[key]
    elif isinstance(norm, numbers.Real) and not isinstance(norm, (bool, np.bool_)):
        if float(norm) in (1.0, 2.0, math.inf):
            return float(norm)
    raise ConfigError(f"ln_structured option norm must be 1, 2 or inf (or 'l1', 'l2', 'linf'); got {norm!r}")


@register_strategy(
    "ln_structured",
    "per tensor, prune its rate of its remaining output channels (dim 0) with the smallest Ln norm (option norm)",
    scope="layer",
    structured=True,
    options=("norm",),
    required_options=("norm",),
)
def _ln_structured(weights, masks, rate, rates, rng, norm=None):
    if norm is None:
        raise ConfigError("ln_structured needs the option norm: 1, 2 or inf (or 'l1', 'l2', 'linf')")
    p = _parse_norm(norm)
    out = {}
    for name, m in masks.items():
        _check_structured(name, m)
        channels = m.shape[0]
        m2 = m.reshape(channels, -1)
        alive = np.flatnonzero(m2.any(axis=1))
        k = count_to_prune(rates[name], alive.size)
        new = m.copy()
        if k:
            rows_m = m2[alive]
            rows_w = np.abs(weights[name].reshape(channels, -1)[alive].astype(np.float64))
            if np.isnan(rows_w[rows_m]).any():
                raise ConfigError(f"weights for {name!r} contain NaN among the kept entries; cannot compute norms")
            rows_w = np.where(rows_m, rows_w, 0.0)  # masked weights; pruned values ignored even if NaN/inf
            if p == 1.0:
                norms = rows_w.sum(axis=1)
            elif p == 2.0:
                norms = np.sqrt(np.einsum("ij,ij->i", rows_w, rows_w))
            else:
                norms = rows_w.max(axis=1, initial=0.0)
            new[alive[smallest_k(norms, k)]] = False
        out[name] = new
    return out


@register_strategy(
    "random_structured",
    "per tensor, prune its rate of its remaining output channels (dim 0) chosen uniformly at random",
    scope="layer",
    structured=True,
    needs_rng=True,
)
def _random_structured(weights, masks, rate, rates, rng):
    out = {}
    for name, m in masks.items():
        _check_structured(name, m)
        alive = np.flatnonzero(m.reshape(m.shape[0], -1).any(axis=1))
        new = m.copy()
        new[alive[random_k(alive.size, count_to_prune(rates[name], alive.size), rng)]] = False
        out[name] = new
    return out
