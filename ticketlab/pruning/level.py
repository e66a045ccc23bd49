"""One pruning level: :func:`prune` validates a call and hands it to the registered strategy."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from ticketlab.errors import ConfigError
from ticketlab.pruning.inputs import check_inputs, check_rate
from ticketlab.pruning.registry import get_strategy

__all__ = ["prune"]


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
        A registered strategy name (:data:`~ticketlab.pruning.STRATEGIES`; ``ticketlab strategies`` lists them).
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
        Source of randomness; required by the strategies with ``needs_rng`` (the random ones), ignored by the
        others.
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
    rate = check_rate(rate, "rate", allow_zero=False)
    unknown_opts = sorted(set(options) - set(strat.options))
    if unknown_opts:
        accepted = ", ".join(strat.options) if strat.options else "none"
        raise ConfigError(
            f"pruning strategy {strat.name!r} does not take option {unknown_opts[0]!r} (its options: {accepted})"
        )
    w, m = check_inputs(weights, masks)
    rates = {name: rate for name in m}
    if layer_rates is not None:
        if strat.pooled:
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
            rates[name] = check_rate(value, f"layer_rates[{name!r}]", allow_zero=True)
    if rng is not None and not isinstance(rng, np.random.Generator):
        raise ConfigError(f"rng must be a numpy.random.Generator (numpy.random.default_rng(seed)); got {rng!r}")
    if strat.needs_rng and rng is None:
        raise ConfigError(
            f"pruning strategy {strat.name!r} is random and needs rng=numpy.random.default_rng(seed)"
        )
    return strat.func(w, m, rate, rates, rng, **options)
