"""Pruning strategies: pure functions from (weights, current masks, rate) to new, nested masks.

Every strategy is registered under a name (:func:`list_strategies`, :func:`get_strategy`) and called through
:func:`prune`. Nothing here touches an ``nn.Module`` or a file: weights come in as tensors or arrays, masks as
``dict[str, numpy.ndarray[bool]]`` (``True`` = kept, see :mod:`ticketlab.masks`), and new masks go out.

Semantics shared by all strategies
----------------------------------
*Rate.* ``rate`` is the fraction of the **remaining** (currently kept) weights pruned at this level, or for the
structured strategies the fraction of the remaining output channels/units; it is torch.nn.utils.prune's float
``amount`` applied through a ``PruningContainer``. Calling a strategy ``L`` times at rate ``r`` leaves about
``(1 - r) ** L`` of the weights.

*Counting rule.* The number pruned from a pool of ``remaining`` candidates is
``round(rate * remaining)`` computed with Python floats and Python's :func:`round` (round half to even), exactly
as ``torch.nn.utils.prune._compute_nparams_toprune`` does (:func:`count_to_prune`). The pool is one tensor for the
``layer_*`` and structured strategies and all tensors together for the ``global_*`` strategies.

*Nesting.* The new mask of every tensor is a subset of its old mask: a pruned weight stays pruned. Only currently
kept weights are candidates; the values that ``weights`` holds at pruned positions are ignored (they may be
anything, even NaN). A kept weight that is NaN raises :class:`~ticketlab.errors.ConfigError`.

*Magnitudes* are ``|w|`` in float64 (exact for float16/bfloat16/float32/float64 inputs), so weights of different
dtypes are compared exactly.

*Ties* (equal magnitudes or equal channel norms) are broken by position: among equal candidates the one that
comes first is pruned first. "First" means lower flat index in C (row-major) order within a tensor, lower
output-channel index for the structured strategies, and for the ``global_*`` strategies tensors are concatenated
in the iteration order of ``masks``. The result is therefore a deterministic function of the inputs (and of the
``rng`` state for the random strategies). torch.nn.utils.prune makes no promise about ties (it relies on
``torch.topk``), so the two agree whenever there are no ties at the pruning threshold.

*Randomness.* Random strategies draw from the ``numpy.random.Generator`` passed as ``rng`` (required), tensor by
tensor in the iteration order of ``masks``; the same seed and the same inputs give the same masks. Deterministic
strategies ignore ``rng``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import torch

from ticketlab.errors import ConfigError
from ticketlab.masks import as_bool_mask

__all__ = [
    "PruningStrategy",
    "count_to_prune",
    "get_strategy",
    "list_strategies",
    "prune",
    "random_mask_like",
    "register_strategy",
    "shuffle_mask",
]

#: Signature of a registered strategy function, called by :func:`prune` after validation:
#: ``func(weights, masks, rate, rates, rng, **options) -> dict[str, numpy.ndarray]`` where ``weights`` are numpy
#: arrays, ``masks`` boolean numpy arrays (to be left unmodified), ``rate`` the global rate and ``rates`` the
#: per-tensor rates (``rate`` overridden by ``layer_rates``).
StrategyFunc = Callable[..., dict[str, np.ndarray]]


@dataclass(frozen=True)
class PruningStrategy:
    """One registered pruning strategy.

    Attributes
    ----------
    name : str
        Registry name, e.g. ``"global_magnitude"``.
    description : str
        One line for ``ticketlab strategies``.
    func : callable
        The implementation (see ``StrategyFunc``); call it through :func:`prune`, which validates the inputs.
    scope : str
        ``"layer"``: each tensor is pruned at its own rate (``layer_rates`` allowed); ``"global"``: all tensors
        form one pool pruned at ``rate`` (``layer_rates`` rejected).
    structured : bool
        Whether whole output channels/units (slices ``w[c]`` along dim 0) are pruned instead of single weights;
        ``rate`` then counts channels.
    needs_rng : bool
        Whether ``rng`` is required.
    options : tuple of str
        Names of the extra keyword options the strategy accepts (e.g. ``("norm",)``).
    """

    name: str
    description: str
    func: StrategyFunc
    scope: str
    structured: bool = False
    needs_rng: bool = False
    options: tuple[str, ...] = ()


_STRATEGIES: dict[str, PruningStrategy] = {}


def register_strategy(
    name: str,
    description: str,
    *,
    scope: str,
    structured: bool = False,
    needs_rng: bool = False,
    options: tuple[str, ...] = (),
) -> Callable[[StrategyFunc], StrategyFunc]:
    """Decorator adding a strategy function to the registry under ``name``.

    Parameters
    ----------
    name : str
        Registry name; must be new.
    description : str
        One line (no newline) shown by ``ticketlab strategies``.
    scope : {"layer", "global"}
        See :class:`PruningStrategy`.
    structured, needs_rng, options
        See :class:`PruningStrategy`.

    Returns
    -------
    callable
        The decorator; it returns the function unchanged.
    """
    if scope not in ("layer", "global"):
        raise ValueError(f"scope must be 'layer' or 'global', got {scope!r}")
    if "\n" in description or not description.strip():
        raise ValueError("a strategy description is one non-empty line")

    def decorator(func: StrategyFunc) -> StrategyFunc:
        if name in _STRATEGIES:
            raise ValueError(f"pruning strategy {name!r} is already registered")
        _STRATEGIES[name] = PruningStrategy(
            name=name,
            description=description,
            func=func,
            scope=scope,
            structured=structured,
            needs_rng=needs_rng,
            options=tuple(options),
        )
        return func

    return decorator


def list_strategies() -> list[str]:
    """Names of the registered strategies, in registration order.

    Returns
    -------
    list of str
        Use :func:`get_strategy` for each one's description and properties.
    """
    return list(_STRATEGIES)


def get_strategy(name: str) -> PruningStrategy:
    """The registered strategy called ``name``.

    Raises
    ------
    ConfigError
        If no strategy has that name; the message lists the valid names.
    """
    try:
        return _STRATEGIES[name]
    except (KeyError, TypeError):
        raise ConfigError(
            f"unknown pruning strategy {name!r}; choose one of: {', '.join(_STRATEGIES)}"
        ) from None


# ----------------------------------------------------------------------------------------------------------------
# Counting, validation and conversion helpers


def count_to_prune(rate: float, remaining: int) -> int:
    """Number of candidates pruned from a pool of ``remaining`` at ``rate``: ``round(rate * remaining)``.

    Uses Python float arithmetic and Python's :func:`round` (round half to even: ``round(2.5) == 2``), which is
    the rule of ``torch.nn.utils.prune._compute_nparams_toprune`` for a float ``amount``.

    Parameters
    ----------
    rate : float
        Fraction of the remaining candidates to prune, in [0, 1].
    remaining : int
        Number of candidates (kept weights, or remaining channels), ≥ 0.

    Returns
    -------
    int
        Count in ``[0, remaining]``.
    """
    return int(round(float(rate) * int(remaining)))


def _check_rate(value: Any, what: str, *, allow_zero: bool) -> float:
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


def _to_numpy_weight(name: str, value: Any) -> np.ndarray:
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


def _check_inputs(
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
        w = _to_numpy_weight(name, weights[name])
        m = as_bool_mask(name, masks[name])
        if w.shape != m.shape:
            raise ConfigError(f"mask for {name!r} has shape {m.shape} but its weights have shape {w.shape}")
        out_w[name] = w
        out_m[name] = m
    return out_w, out_m


def _kept_magnitudes(name: str, w: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``|w|`` of the kept entries, float64, in C order; raises on NaN among them."""
    vals = w[m].astype(np.float64, copy=False)  # boolean indexing already copied: safe to work in place
    np.abs(vals, out=vals)
    if np.isnan(vals).any():
        raise ConfigError(f"weights for {name!r} contain NaN among the kept entries; cannot rank by magnitude")
    return vals


def _smallest_k(values: np.ndarray, k: int) -> np.ndarray:
    """Boolean flags marking the ``k`` smallest ``values``; ties go to the lower index. O(n) via partition."""
    n = values.size
    flags = np.zeros(n, dtype=bool)
    if k <= 0:
        return flags
    if k >= n:
        flags[:] = True
        return flags
    threshold = np.partition(values, k - 1)[k - 1]
    np.less(values, threshold, out=flags)
    need = k - int(np.count_nonzero(flags))
    flags[np.flatnonzero(values == threshold)[:need]] = True
    return flags


def _random_k(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Boolean flags marking ``k`` of ``n`` positions chosen uniformly at random without replacement."""
    flags = np.zeros(n, dtype=bool)
    if k >= n:
        flags[:] = True
    elif k > 0:
        flags[rng.choice(n, size=k, replace=False)] = True
    return flags


def _apply_flags(m: np.ndarray, prune_flags: np.ndarray) -> np.ndarray:
    """New mask: ``m`` with the kept entries flagged in ``prune_flags`` (C order of kept entries) set False."""
    new = m.copy()
    if prune_flags.any():
        new[m] = ~prune_flags
    return new


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


# ----------------------------------------------------------------------------------------------------------------
# Strategies


@register_strategy(
    "global_magnitude",
    "prune the rate fraction of all remaining weights, pooled over tensors, with the smallest |w|",
    scope="global",
)
def _global_magnitude(weights, masks, rate, rates, rng):
    vals = [_kept_magnitudes(name, weights[name], m) for name, m in masks.items()]
    pool = np.concatenate(vals) if len(vals) > 1 else vals[0]
    flags = _smallest_k(pool, count_to_prune(rate, pool.size))
    return _split_and_apply(masks, vals, flags)


@register_strategy(
    "layer_magnitude",
    "per tensor, prune its rate of its remaining weights with the smallest |w|",
    scope="layer",
)
def _layer_magnitude(weights, masks, rate, rates, rng):
    out = {}
    for name, m in masks.items():
        vals = _kept_magnitudes(name, weights[name], m)
        out[name] = _apply_flags(m, _smallest_k(vals, count_to_prune(rates[name], vals.size)))
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
    flags = _random_k(total, count_to_prune(rate, total), rng)
    return _split_and_apply(masks, kept, flags)


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
        out[name] = _apply_flags(m, _random_k(n, count_to_prune(rates[name], n), rng))
    return out


@register_strategy(
    "ln_structured",
    "per tensor, prune its rate of its remaining output channels (dim 0) with the smallest Ln norm (option norm)",
    scope="layer",
    structured=True,
    options=("norm",),
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
            new[alive[_smallest_k(norms, k)]] = False
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
        new[alive[_random_k(alive.size, count_to_prune(rates[name], alive.size), rng)]] = False
        out[name] = new
    return out


def _split_and_apply(masks: dict[str, np.ndarray], parts: list, flags: np.ndarray) -> dict[str, np.ndarray]:
    """Split pooled prune flags back per tensor (``parts``: per-tensor arrays or kept counts) and apply them."""
    sizes = [p if isinstance(p, int) else p.size for p in parts]
    bounds = np.cumsum([0] + sizes)
    return {
        name: _apply_flags(m, flags[bounds[i] : bounds[i + 1]]) for i, (name, m) in enumerate(masks.items())
    }


# ----------------------------------------------------------------------------------------------------------------
# Public entry point


def prune(
    strategy: str,
    weights: Mapping[str, torch.Tensor | np.ndarray],
    masks: Mapping[str, np.ndarray],
    rate: float,
    *,
    layer_rates: Mapping[str, float] | None = None,
    rng: np.random.Generator | None = None,
    **options: Any,
) -> dict[str, np.ndarray]:
    """Prune one level: return new masks, each a subset of the old one.

    Parameters
    ----------
    strategy : str
        A registered strategy name (:func:`list_strategies`): ``global_magnitude``, ``layer_magnitude``,
        ``global_random``, ``layer_random``, ``ln_structured``, ``random_structured``.
    weights : mapping of str to torch.Tensor or numpy.ndarray
        The (trained) weights of exactly the tensors named in ``masks``, each of its mask's shape. Real dtypes
        only; torch tensors may be on any device and may require grad. Values at pruned positions are ignored.
    masks : mapping of str to numpy.ndarray
        Current masks (bool, or 0/1 of any numeric dtype), ``True`` = kept. Not modified.
    rate : float
        Fraction of the remaining weights to prune, in (0, 1) (for structured strategies: fraction of the
        remaining output channels, i.e. slices along dim 0 with at least one kept weight). For ``global_*``
        strategies the fraction of all remaining weights pooled over tensors.
    layer_rates : mapping of str to float, optional
        Per-tensor rates overriding ``rate`` (values in [0, 1); 0 leaves the tensor as it is), e.g. half the rate
        for the output layer as in Frankle & Carbin (2019). Every key must name a tensor of ``masks``. Not allowed
        with ``global_*`` strategies.
    rng : numpy.random.Generator, optional
        Source of randomness; required by ``global_random``, ``layer_random`` and ``random_structured``,
        ignored by the others.
    **options
        Strategy options. ``ln_structured`` requires ``norm``: 1, 2 or ``inf`` (or ``"l1"``, ``"l2"``,
        ``"linf"``); channels are ranked by the Ln norm of their masked weights ``w[c] * mask[c]``.

    Returns
    -------
    dict of str to numpy.ndarray
        New boolean masks, freshly allocated, same keys (in the order of ``masks``) and shapes. For each tensor
        (or, for ``global_*``, in total) exactly :func:`count_to_prune` ``(rate, remaining)`` weights or channels
        go from kept to pruned; previously pruned entries stay pruned.

    Raises
    ------
    ConfigError
        Unknown strategy or option; ``rate`` outside (0, 1); ``layer_rates`` naming an unknown tensor, holding a
        value outside [0, 1), or given to a global strategy; names of ``weights`` and ``masks`` differing; a
        shape mismatch; a missing ``rng``; NaN among kept weights; a tensor with fewer than 2 dimensions given
        to a structured strategy; an invalid ``norm``.

    Notes
    -----
    Ties are broken by position (see the module docstring): among candidates of equal magnitude (or channel
    norm) the lower flat index (channel index; for global strategies the earlier tensor in ``masks`` order) is
    pruned first.
    """
    strat = get_strategy(strategy)
    rate = _check_rate(rate, "rate", allow_zero=False)
    unknown_opts = sorted(set(options) - set(strat.options))
    if unknown_opts:
        accepted = ", ".join(strat.options) if strat.options else "none"
        raise ConfigError(
            f"pruning strategy {strat.name!r} does not take option {unknown_opts[0]!r} (its options: {accepted})"
        )
    w, m = _check_inputs(weights, masks)
    rates = {name: rate for name in m}
    if layer_rates is not None:
        if strat.scope == "global":
            raise ConfigError(
                f"pruning strategy {strat.name!r} pools all tensors and prunes them at one rate; layer_rates "
                "needs a per-layer strategy such as " + strat.name.replace("global_", "layer_")
            )
        if not isinstance(layer_rates, Mapping):
            raise ConfigError(f"layer_rates must map tensor names to rates; got {type(layer_rates).__name__}")
        unknown = [name for name in layer_rates if name not in m]
        if unknown:
            raise ConfigError(
                f"layer_rates names tensor {unknown[0]!r}, which is not among the pruned tensors: "
                + ", ".join(m)
            )
        for name, value in layer_rates.items():
            rates[name] = _check_rate(value, f"layer_rates[{name!r}]", allow_zero=True)
    if rng is not None and not isinstance(rng, np.random.Generator):
        raise ConfigError(f"rng must be a numpy.random.Generator (numpy.random.default_rng(seed)); got {rng!r}")
    if strat.needs_rng and rng is None:
        raise ConfigError(
            f"pruning strategy {strat.name!r} is random and needs rng=numpy.random.default_rng(seed)"
        )
    return strat.func(w, m, rate, rates, rng, **options)


# ----------------------------------------------------------------------------------------------------------------
# Control masks


def _check_control_inputs(masks: Mapping[str, Any], rng: Any, what: str) -> dict[str, np.ndarray]:
    if not isinstance(rng, np.random.Generator):
        raise ConfigError(f"{what} needs rng=numpy.random.default_rng(seed); got {rng!r}")
    if not isinstance(masks, Mapping):
        raise ConfigError(f"{what} needs masks as a mapping from tensor name to array")
    return {name: as_bool_mask(name, value) for name, value in masks.items()}


def shuffle_mask(masks: Mapping[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Layerwise shuffle: each tensor's mask entries randomly permuted within that tensor.

    This is the "layerwise random shuffling" ablation of Frankle et al. (2021): every tensor keeps its number
    of kept weights (hence its density) but *which* weights are kept is redrawn inside the tensor.

    Parameters
    ----------
    masks : mapping of str to numpy.ndarray
        Masks (bool or 0/1), ``True`` = kept. Not modified.
    rng : numpy.random.Generator
        Source of randomness; consumed tensor by tensor in the order of ``masks`` (one ``rng.permutation``
        of the flattened mask per tensor).

    Returns
    -------
    dict of str to numpy.ndarray
        New boolean masks of the same shapes and per-tensor kept counts.

    Notes
    -----
    A uniformly random permutation of a tensor with ``k`` kept of ``n`` entries yields every ``k``-subset with
    probability ``1 / C(n, k)``, independently of where the ``k`` kept entries were. So ``shuffle_mask(masks,
    rng)`` and ``random_mask_like(masks, rng)`` have **the same distribution**: neither retains any relation to
    the input's positions (no row/column/channel structure, no overlap beyond chance, which is ``k / n`` in
    expectation per tensor). They differ only in how ``rng`` is consumed, hence in the realisation drawn for a
    given seed. Use whichever name states the experiment ("the ticket, shuffled" vs "a random mask at the
    ticket's layerwise densities"); do not expect the two to agree seed for seed.
    """
    masks = _check_control_inputs(masks, rng, "shuffle_mask")
    return {name: rng.permutation(m.ravel()).reshape(m.shape) for name, m in masks.items()}


def random_mask_like(masks: Mapping[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A fresh uniformly random mask per tensor with the same kept count as ``masks``.

    Frankle & Carbin's (2019) "random sparsity" control at the ticket's layerwise densities: for each tensor
    with ``k`` kept of ``n`` entries, ``k`` positions are drawn uniformly without replacement
    (``rng.choice(n, k, replace=False)``).

    Parameters
    ----------
    masks : mapping of str to numpy.ndarray
        Masks (bool or 0/1), ``True`` = kept; only their shapes and kept counts are used. Not modified.
    rng : numpy.random.Generator
        Source of randomness; consumed tensor by tensor in the order of ``masks`` (nothing is drawn for tensors
        with ``k`` equal to 0 or ``n``).

    Returns
    -------
    dict of str to numpy.ndarray
        New boolean masks of the same shapes and per-tensor kept counts.

    Notes
    -----
    Same distribution as :func:`shuffle_mask` (see there); different realisation for a given seed.
    """
    masks = _check_control_inputs(masks, rng, "random_mask_like")
    out = {}
    for name, m in masks.items():
        new = np.zeros(m.shape, dtype=bool)
        new.reshape(-1)[_random_k(m.size, int(np.count_nonzero(m)), rng)] = True
        out[name] = new
    return out
