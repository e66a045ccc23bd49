"""How many to prune, and which: the counting rule shared with ``torch.nn.utils.prune`` and the selection of
the smallest (or random) candidates, ties broken by position."""

from __future__ import annotations

import numpy as np

__all__ = ["apply_flags", "count_to_prune", "random_k", "smallest_k", "split_and_apply"]


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


def smallest_k(values: np.ndarray, k: int) -> np.ndarray:
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


def random_k(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Boolean flags marking ``k`` of ``n`` positions chosen uniformly at random without replacement."""
    flags = np.zeros(n, dtype=bool)
    if k >= n:
        flags[:] = True
    elif k > 0:
        flags[rng.choice(n, size=k, replace=False)] = True
    return flags


def apply_flags(m: np.ndarray, prune_flags: np.ndarray) -> np.ndarray:
    """New mask: ``m`` with the kept entries flagged in ``prune_flags`` (C order of kept entries) set False."""
    new = m.copy()
    if prune_flags.any():
        new[m] = ~prune_flags
    return new


def split_and_apply(masks: dict[str, np.ndarray], parts: list, flags: np.ndarray) -> dict[str, np.ndarray]:
    """Split pooled prune flags back per tensor (``parts``: per-tensor arrays or kept counts) and apply them."""
    sizes = [p if isinstance(p, int) else p.size for p in parts]
    bounds = np.cumsum([0] + sizes)
    return {
        name: apply_flags(m, flags[bounds[i] : bounds[i + 1]]) for i, (name, m) in enumerate(masks.items())
    }
