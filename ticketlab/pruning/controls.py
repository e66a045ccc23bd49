"""Control masks: a ticket's masks shuffled within each tensor, or redrawn at random at the same densities."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ticketlab.errors import ConfigError
from ticketlab.masks import as_bool_mask
from ticketlab.pruning.counts import random_k

__all__ = ["random_mask_like", "shuffle_mask"]


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
        new.reshape(-1)[random_k(m.size, int(np.count_nonzero(m)), rng)] = True
        out[name] = new
    return out
