"""Each chain's batches: the single-chain path's data order and augmentation, per chain, for a stacked step.

Chain ``k`` at step ``s`` of a group is at iteration ``i = start_k + s`` of its own run and trains on the batch the
single-chain path would use there: slice ``i % S`` of :func:`~ticketlab.training.epoch_permutation` ``(seed_k,
i // S)`` (``S`` = steps per epoch), and, with an augmentation, ``augment(batch, generator)`` with a generator on
the device seeded from ``derive_seed(seed_k, AUGMENT_STREAM, i)``.

The permutation of each chain's current epoch is held on the device in one ``(K, N)`` tensor; the host loads a
chain's row when the chain enters a new epoch (known in advance: :meth:`ChainData.epoch_loads`). The batch
indices are computed on the device from the ``(K,)`` iteration counters (:meth:`ChainData.batch`,
:meth:`ChainData.advance`), so without augmentation the whole data step runs on the device and can be captured in
a CUDA graph. The permutations are drawn on the CPU (as the single-chain path does) and copied from pinned memory
without waiting for the device.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from ticketlab.training import AUGMENT_STREAM, derive_seed, epoch_permutation, steps_per_epoch

__all__ = ["ChainData"]

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


class ChainData:
    """The training set on the device and the batches of K chains.

    Parameters
    ----------
    x, y : Tensor
        The training set (moved to ``device`` once).
    seeds, starts : sequences of K ints
        Each chain's seed and the iteration its first step runs.
    batch_size : int
    device : torch.device
    augment : callable(x, generator) -> x, optional
        Batch augmentation, applied per chain with the single-chain path's generator (not on the device
        counters: a step with augmentation prepares its batch eagerly, outside a CUDA graph).
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, seeds: Sequence[int], starts: Sequence[int],
                 batch_size: int, device: torch.device, augment: Augment | None = None) -> None:
        self.device = torch.device(device)
        self.x, self.y = x.to(self.device), y.to(self.device)
        self.n, self.batch_size = len(x), int(batch_size)
        self.steps_per_epoch = steps_per_epoch(self.n, self.batch_size)
        self.seeds, self.starts = [int(s) for s in seeds], [int(s) for s in starts]
        self.augment = augment
        K = len(self.seeds)
        self.perm = torch.empty((K, self.n), dtype=torch.int64, device=self.device)
        self.iteration = torch.tensor(self.starts, dtype=torch.int64, device=self.device)
        self._offsets = torch.arange(self.batch_size, device=self.device)
        self._pinned = self.device.type == "cuda"
        self._pending: dict[int, tuple[torch.Tensor, torch.cuda.Event]] = {}
        for k in range(K):
            self.load_epoch(k, 0)

    @property
    def chains(self) -> int:
        return len(self.seeds)

    def epoch_loads(self, steps: int) -> dict[int, list[int]]:
        """Step -> chains that enter a new epoch at that step, for steps ``1 .. steps - 1`` (every chain loads its
        first epoch at construction)."""
        spe, loads = self.steps_per_epoch, {}
        for k, start in enumerate(self.starts):
            first = (-start) % spe or spe  # the first step > 0 at which start + s is a multiple of spe
            for s in range(first, steps, spe):
                loads.setdefault(s, []).append(k)
        return loads

    def load_epoch(self, k: int, step: int) -> None:
        """Load chain ``k``'s permutation for the epoch of its iteration at ``step``."""
        epoch = (self.starts[k] + step) // self.steps_per_epoch
        perm = epoch_permutation(self.seeds[k], epoch, self.n)
        if not self._pinned:
            self.perm[k].copy_(perm)
            return
        # asynchronous copy from pinned memory; the staging tensor of chain k is kept until its copy is done
        old = self._pending.pop(k, None)
        if old is not None:
            old[1].synchronize()  # long finished: the previous epoch's copy
        staging = perm.pin_memory()
        self.perm[k].copy_(staging, non_blocking=True)
        done = torch.cuda.Event()
        done.record()
        self._pending[k] = (staging, done)

    def indices(self) -> torch.Tensor:
        """The ``(K, B)`` batch indices of the current step, from the device iteration counters."""
        position = torch.remainder(self.iteration, self.steps_per_epoch).mul_(self.batch_size)
        return self.perm.gather(1, position.unsqueeze(1) + self._offsets)

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs ``(K, B, ...)`` and labels ``(K, B)`` of the current step, without augmentation."""
        idx = self.indices()
        flat = idx.reshape(-1)  # index_select is faster than advanced indexing
        xb = self.x.index_select(0, flat).view(*idx.shape, *self.x.shape[1:])
        return xb, self.y.index_select(0, flat).view(idx.shape)

    def augmented_batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`batch` with each chain's augmentation at its iteration (host-side: ``step`` is the group step)."""
        xb, yb = self.batch()
        out = []
        for k in range(self.chains):
            it = self.starts[k] + step
            generator = torch.Generator(device=self.device).manual_seed(derive_seed(self.seeds[k], AUGMENT_STREAM, it))
            out.append(self.augment(xb[k], generator))
        return torch.stack(out), yb

    def advance(self) -> None:
        """Move every chain to its next iteration (a device operation)."""
        self.iteration.add_(1)
