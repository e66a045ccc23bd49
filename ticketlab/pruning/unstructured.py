"""Unstructured strategies: single weights pruned by magnitude or at random, per tensor or pooled over tensors."""

from __future__ import annotations

import numpy as np

from ticketlab.pruning.counts import apply_flags, count_to_prune, random_k, smallest_k, split_and_apply
from ticketlab.pruning.inputs import kept_magnitudes
from ticketlab.pruning.registry import register_strategy


@register_strategy(
    "global_magnitude",
    "prune the rate fraction of all remaining weights, pooled over tensors, with the smallest |w|",
    scope="global",
)
def _global_magnitude(weights, masks, rate, rates, rng):
    vals = [kept_magnitudes(name, weights[name], m) for name, m in masks.items()]
    pool = np.concatenate(vals) if len(vals) > 1 else vals[0]
    flags = smallest_k(pool, count_to_prune(rate, pool.size))
    return split_and_apply(masks, vals, flags)


@register_strategy(
    "layer_magnitude",
    "per tensor, prune its rate of its remaining weights with the smallest |w|",
    scope="layer",
)
def _layer_magnitude(weights, masks, rate, rates, rng):
    out = {}
    for name, m in masks.items():
        vals = kept_magnitudes(name, weights[name], m)
        out[name] = apply_flags(m, smallest_k(vals, count_to_prune(rates[name], vals.size)))
    return out


@register_strategy(
    "global_random",
    "prune the rate fraction of all remaining weights, pooled over tensors, uniformly at random",
    scope="global",
    needs_rng=True,
)
def _global_random(weights, masks, rate, rates, rng):
    kept = [int(np.count_nonzero(m)) for m in masks.values()]
    total = sum(kept)
    flags = random_k(total, count_to_prune(rate, total), rng)
    return split_and_apply(masks, kept, flags)


@register_strategy(
    "layer_random",
    "per tensor, prune its rate of its remaining weights uniformly at random",
    scope="layer",
    needs_rng=True,
)
def _layer_random(weights, masks, rate, rates, rng):
    out = {}
    for name, m in masks.items():
        n = int(np.count_nonzero(m))
        out[name] = apply_flags(m, random_k(n, count_to_prune(rates[name], n), rng))
    return out
