"""The validation hold-out: a fixed random split of a training set, the same on every platform."""

from __future__ import annotations

import numpy as np

from ticketlab.errors import ConfigError

__all__ = ["LTH_VALIDATION_SIZE", "as_int", "validation_split"]

#: Number of training images the lottery-ticket paper (Frankle & Carbin, 2019) holds out for validation.
LTH_VALIDATION_SIZE = 5000


def as_int(value, what: str) -> int:
    """``value`` as an int; a :class:`ConfigError` naming ``what`` for anything else (bools included)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"{what} must be an integer; got {value!r}")
    return int(value)


def validation_split(n: int, n_val: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Carve a fixed random validation hold-out from a training set of ``n`` examples.

    The indices are a permutation drawn by ``numpy.random.default_rng(seed).permutation(n)`` (PCG64, the
    same on every platform): its first ``n_val`` entries are the validation set, the rest the training set.
    The lottery-ticket paper (Frankle & Carbin, 2019) holds out 5,000 training images
    (:data:`LTH_VALIDATION_SIZE`).

    Parameters
    ----------
    n : int
        Size of the full training set, ≥ 1.
    n_val : int
        Size of the hold-out, ``0 <= n_val < n``.
    seed : int
        Non-negative seed; the same seed always gives the same split.

    Returns
    -------
    train_idx, val_idx : numpy.ndarray
        Disjoint int64 index arrays, each sorted ascending, together covering ``0 .. n - 1``.

    Raises
    ------
    ConfigError
        For a non-integer or out-of-range argument.
    """
    n = as_int(n, "n")
    n_val = as_int(n_val, "n_val")
    seed = as_int(seed, "seed")
    if n < 1:
        raise ConfigError(f"n must be at least 1; got {n}")
    if not 0 <= n_val < n:
        raise ConfigError(f"validation size n_val must be in 0..{n - 1} (the training set has {n}); got {n_val}")
    if seed < 0:
        raise ConfigError(f"seed must be non-negative; got {seed}")
    perm = np.random.default_rng(seed).permutation(n).astype(np.int64)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])
