"""The data order and the random streams of a run, as pure functions of ``(seed, iteration)``.

The batch of iteration ``i`` is slice ``i % S`` of the permutation of epoch ``i // S`` (``S`` =
:func:`steps_per_epoch`), drawn from ``torch.Generator().manual_seed(derive_seed(seed, DATA, epoch))``
(:func:`epoch_permutation`, :func:`batch_indices`), so a run can be cut anywhere, or rewound to iteration ``K``,
and replay exactly the batches of the original run. The augmentation and the model's own randomness (dropout)
draw from other streams of :func:`derive_seed`.
"""

from __future__ import annotations

import numpy as np
import torch

from ticketlab.errors import ConfigError
from ticketlab.training.checks import check_float, check_int

__all__ = [
    "AUGMENT_STREAM",
    "DATA_STREAM",
    "MODEL_RNG_STREAM",
    "batch_indices",
    "derive_generator",
    "derive_seed",
    "epoch_permutation",
    "iterations_from_epochs",
    "steps_per_epoch",
]

# Stream tags for derive_seed: the data order and the augmentation never share a random stream with each other
# or with the model's own randomness (dropout), even for equal seeds.
DATA_STREAM = 0x64617461  # "data"
AUGMENT_STREAM = 0x61756700  # "aug"
MODEL_RNG_STREAM = 0x726E6700  # "rng"


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Optimizer steps in one epoch: ``floor(n_train / batch_size)`` (the incomplete last batch is dropped).

    Every batch therefore holds exactly ``batch_size`` examples.
    """
    n_train = check_int("n_train", n_train, 0)
    batch_size = check_int("batch_size", batch_size, 1)
    if n_train < batch_size:
        raise ConfigError(
            f"the training set ({n_train} examples) is smaller than one batch ({batch_size}); lower batch_size"
        )
    return n_train // batch_size


def iterations_from_epochs(epochs: float, n_train: int, batch_size: int) -> int:
    """Number of iterations in ``epochs`` epochs: ``round(epochs * floor(n_train / batch_size))``.

    ``epochs`` may be fractional (e.g. ``0.5``); the result is rounded to the nearest iteration.
    """
    epochs = check_float("epochs", epochs)
    if epochs < 0:
        raise ConfigError(f"epochs must be >= 0; got {epochs:g}")
    return int(round(epochs * steps_per_epoch(n_train, batch_size)))


def derive_seed(seed: int, *keys: int) -> int:
    """A 63-bit seed derived from ``seed`` and ``keys`` (non-negative ints) by ``numpy.random.SeedSequence``.

    Distinct key tuples give independent streams; the value depends only on the arguments.
    """
    seed = check_int("seed", seed, 0)
    state = np.random.SeedSequence((seed, *[int(k) for k in keys])).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def epoch_permutation(seed: int, epoch: int, n: int) -> torch.Tensor:
    """Order of the ``n`` training examples in ``epoch``: ``torch.randperm(n)`` drawn from
    ``torch.Generator().manual_seed(derive_seed(seed, DATA, epoch))``; int64 tensor of shape ``(n,)`` on CPU."""
    generator = torch.Generator().manual_seed(derive_seed(seed, DATA_STREAM, check_int("epoch", epoch, 0)))
    return torch.randperm(n, generator=generator)


def batch_indices(seed: int, iteration: int, n_train: int, batch_size: int) -> torch.Tensor:
    """Indices of the training examples in the batch of ``iteration``; int64 tensor of shape ``(batch_size,)``.

    Slice ``iteration % S`` (of length ``batch_size``) of :func:`epoch_permutation` of epoch ``iteration // S``,
    ``S = steps_per_epoch(n_train, batch_size)``.
    """
    spe = steps_per_epoch(n_train, batch_size)
    epoch, pos = divmod(check_int("iteration", iteration, 0), spe)
    return epoch_permutation(seed, epoch, n_train)[pos * batch_size : (pos + 1) * batch_size]


def derive_generator(seed: int, stream: int, index: int, device: torch.device) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with :func:`derive_seed` ``(seed, stream, index)``."""
    return torch.Generator(device=device).manual_seed(derive_seed(seed, stream, index))
