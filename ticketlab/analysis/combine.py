"""Combining several masks of one model into one: intersection, union, or a vote.

- ``"intersection"``: a weight is kept where *every* mask keeps it — Paganini & Forde (2020b)'s consensus
  ("prêt-à-porter") ticket ``M = M1 ∩ … ∩ Mn``.
- ``"union"``: kept where *any* mask keeps it.
- ``"vote"``: kept where at least ``min_votes`` (K) of the n masks keep it; K = n is the intersection, K = 1 the
  union, and the default K = n // 2 + 1 a strict majority.

**Chance level.** If mask i kept, in each layer, its observed number of weights chosen uniformly at random and
independently of the other masks, then a given weight is kept by mask i with probability d_i (mask i's density
in that layer), independently across masks. The expected density of the combined layer is therefore exactly

- intersection: ``Π_i d_i``;
- union: ``1 − Π_i (1 − d_i)``;
- vote: ``P(S ≥ K)`` with S the number of masks keeping the weight, a Poisson-binomial variable (a sum of
  independent Bernoulli(d_i) of different probabilities; binomial(n, d) when all densities are equal), computed
  exactly by convolving the n Bernoulli distributions (:func:`poisson_binomial_tail`).

The model total is the size-weighted mean of the per-layer expectations, ``Σ_l N_l E_l / Σ_l N_l`` — never
computed from pooled densities, which would ignore that layers are pruned unevenly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from ticketlab.errors import ConfigError
from ticketlab.masks import compression, density, sparsity
from ticketlab.registry import Registry



@dataclass(frozen=True)
class CombineMode:
    """One way of combining n masks: how many votes a weight needs, and the chance density of the result.

    Attributes
    ----------
    votes : callable
        ``votes(n, min_votes) -> K``: the votes a weight needs among ``n`` masks (``min_votes`` as given, or None).
    chance : callable
        ``chance(densities, K) -> float``: the expected density of the combination of independent uniformly
        random masks of those densities (see the module docstring).
    takes_min_votes : bool
        Whether ``min_votes`` may be given.
    """

    votes: Callable[[int, int | None], int]
    chance: Callable[[np.ndarray, int], float]
    takes_min_votes: bool = False


def _vote_votes(n: int, min_votes: int | None) -> int:
    if min_votes is None:
        return n // 2 + 1
    if not 1 <= int(min_votes) <= n:
        raise ConfigError(f"min_votes must be an integer in [1, {n}] for {n} masks; got {min_votes}")
    return int(min_votes)


#: Ways of combining masks, by name.
MODES: Registry[CombineMode] = Registry("combination mode")
MODES.register("intersection", CombineMode(lambda n, k: n, lambda d, k: float(np.prod(d))))
MODES.register("union", CombineMode(lambda n, k: 1, lambda d, k: float(1.0 - np.prod(1.0 - d))))
MODES.register("vote", CombineMode(_vote_votes, lambda d, k: poisson_binomial_tail(d, k), takes_min_votes=True))


def resolve_min_votes(n: int, mode: str = "intersection", min_votes: int | None = None) -> int:
    """The number of votes K a weight needs in ``mode`` with ``n`` masks.

    ``intersection`` → n, ``union`` → 1, ``vote`` → ``min_votes`` (default ``n // 2 + 1``, a strict majority).

    Raises
    ------
    ConfigError
        For an unknown mode, ``min_votes`` outside [1, n], or ``min_votes`` with a mode other than ``vote``.
    """
    how = MODES.get(mode)
    if n < 1:
        raise ConfigError("no masks to combine")
    if min_votes is not None and not how.takes_min_votes:
        raise ConfigError(f"min_votes (--min-votes) applies only to mode 'vote'; got {min_votes} with "
                          f"mode {mode!r}")
    return how.votes(n, min_votes)


def combine_layer(masks: Sequence[np.ndarray], mode: str = "intersection", min_votes: int | None = None
                  ) -> np.ndarray:
    """Combine the masks of one tensor.

    Parameters
    ----------
    masks : sequence of ndarray of bool
        n ≥ 1 masks of the same shape (``True`` = kept).
    mode : {"intersection", "union", "vote"}
    min_votes : int, optional
        For ``"vote"``: keep weights kept by at least this many masks (default: a strict majority).

    Returns
    -------
    ndarray of bool
        The combined mask, of the masks' shape.
    """
    arrays = [np.asarray(m) for m in masks]
    k = resolve_min_votes(len(arrays), mode, min_votes)
    shape = arrays[0].shape
    for i, a in enumerate(arrays[1:], 1):
        if a.shape != shape:
            raise ConfigError(f"mask {i} has shape {a.shape}, but mask 0 has {shape}")
    arrays = [a if a.dtype == np.bool_ else a.astype(bool) for a in arrays]
    if k == len(arrays) or k == 1:  # in place, without stacking the n masks
        op = np.logical_and if k == len(arrays) else np.logical_or
        out = arrays[0].copy()
        for a in arrays[1:]:
            op(out, a, out=out)
        return out
    votes = np.zeros(shape, dtype=np.uint8 if len(arrays) < 256 else np.uint32)
    for a in arrays:
        votes += a
    return votes >= k


def combine_masks(masks: Sequence[Mapping[str, np.ndarray]], mode: str = "intersection",
                  min_votes: int | None = None) -> dict[str, np.ndarray]:
    """Combine whole masks layer by layer (:func:`combine_layer`); all must have the same tensors and shapes.

    Returns ``{name: bool array}`` in the first mask's order.
    """
    masks = list(masks)
    if not masks:
        raise ConfigError("no masks to combine")
    names = list(masks[0])
    for i, m in enumerate(masks[1:], 1):
        if list(m) != names:
            diff = [n for n in names if n not in m] + [n for n in m if n not in names]
            what = f"first mismatch: {diff[0]!r}" if diff else "same tensors in another order"
            raise ConfigError(f"mask {i} does not cover the same tensors as mask 0 ({what})")
    return {name: combine_layer([m[name] for m in masks], mode, min_votes) for name in names}


def poisson_binomial_tail(probs: Sequence[float], k: int) -> float:
    """``P(S ≥ k)`` for ``S = Σ_i B_i`` with independent ``B_i ~ Bernoulli(probs[i])``.

    Exact: the pmf of S is built by convolving the n two-point distributions (O(n²)). With equal probabilities
    this is the binomial tail.
    """
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    if np.any((p < 0) | (p > 1)) or np.any(np.isnan(p)):
        raise ConfigError(f"probabilities must lie in [0, 1]; got {p.tolist()}")
    if k <= 0:
        return 1.0
    if k > p.size:
        return 0.0
    pmf = np.ones(1)
    for q in p:
        nxt = np.zeros(pmf.size + 1)
        nxt[:-1] += pmf * (1 - q)
        nxt[1:] += pmf * q
        pmf = nxt
    return float(min(1.0, pmf[k:].sum()))


def chance_density(densities: Sequence[float], mode: str = "intersection", min_votes: int | None = None) -> float:
    """Expected density of the combination of independent uniformly random masks of the given densities.

    Parameters
    ----------
    densities : sequence of float
        d_i, the density of each mask in one layer.
    mode, min_votes
        As for :func:`combine_layer`.

    Returns
    -------
    float
        ``Π d_i`` (intersection), ``1 − Π (1 − d_i)`` (union), or the Poisson-binomial tail ``P(S ≥ K)`` (vote);
        see the module docstring.
    """
    d = np.asarray(densities, dtype=np.float64).reshape(-1)
    k = resolve_min_votes(d.size, mode, min_votes)
    return MODES.get(mode).chance(d, k)


#: Columns of :func:`combine_report` after the caller's constant columns.
COMBINE_COLUMNS = ["layer", "size", "kept", "density", "sparsity", "compression", "expected_density", "ratio",
                   "min_input_density", "max_input_density"]


def combine_report(sizes: Mapping[str, int], input_kept: Sequence[Mapping[str, int]], kept: Mapping[str, int],
                   mode: str = "intersection", min_votes: int | None = None, **columns: Any) -> pd.DataFrame:
    """Density of a combined mask beside its chance expectation, per layer and in total.

    Parameters
    ----------
    sizes : mapping of str to int
        Weights per tensor, in model order.
    input_kept : sequence of mappings of str to int
        Kept counts per tensor of each combined mask.
    kept : mapping of str to int
        Kept counts per tensor of the result.
    mode, min_votes
        How the masks were combined (:func:`combine_layer`).
    **columns
        Constant leading columns.

    Returns
    -------
    pandas.DataFrame
        One row per tensor then ``layer == "total"``. Columns: ``layer``, ``size``, ``kept``, ``density``
        (kept / size), ``sparsity`` (1 − density), ``compression`` (size / kept), ``expected_density`` (the
        chance level of :func:`chance_density` from the inputs' per-layer densities; for the total the
        size-weighted mean of the layers'), ``ratio`` (density / expected_density, NaN when 0 is expected),
        ``min_input_density`` and ``max_input_density`` (over the combined masks).
    """
    n = len(input_kept)
    resolve_min_votes(n, mode, min_votes)
    rows = []
    tot_size = tot_kept = 0
    tot_expected = 0.0
    tot_inputs = np.zeros(n)
    for name, size in sizes.items():
        size = int(size)
        ds = [density(int(k[name]), size) for k in input_kept]
        e = chance_density(ds, mode, min_votes) if size else float("nan")
        k = int(kept[name])
        rows.append(_report_row(name, size, k, e, ds))
        tot_size += size
        tot_kept += k
        tot_expected += e * size if size else 0.0
        tot_inputs += [int(ki[name]) for ki in input_kept]
    e_total = tot_expected / tot_size if tot_size else float("nan")
    rows.append(_report_row("total", tot_size, tot_kept, e_total, [density(int(k), tot_size) for k in tot_inputs]))
    frame = pd.DataFrame(rows, columns=COMBINE_COLUMNS)
    for i, (key, value) in enumerate(columns.items()):
        frame.insert(i, key, value)
    return frame


def _report_row(layer: str, size: int, kept: int, expected: float, input_densities: Sequence[float]
                ) -> dict[str, Any]:
    d = density(kept, size)
    return {"layer": layer, "size": size, "kept": kept, "density": d, "sparsity": sparsity(kept, size),
            "compression": compression(kept, size), "expected_density": expected,
            "ratio": d / expected if expected and expected > 0 else float("nan"),
            "min_input_density": min(input_densities), "max_input_density": max(input_densities)}
