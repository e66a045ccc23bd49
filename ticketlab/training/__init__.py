"""Masked training: the training half of iterative magnitude pruning (IMP).

A network is trained with some of its weights *pruned*: a pruned weight is exactly ``0.0`` in every forward pass
and is never updated. :class:`MaskedParameters` keeps that invariant with batched multiplications
(``torch._foreach_mul_``): the gradients after ``loss.backward()``, so that optimizer state (momentum, Adam moments)
stays 0 at pruned positions, and the weights after ``optimizer.step()``. For the registered optimizers a zero
weight with zero gradient and zero state stays exactly zero (their entries' ``keeps_zeros``), so :func:`train`
re-zeroes the weights only before each evaluation and at the end (see ``rezero_every_step``). No forward hooks are
involved: the forward pass uses the stored weights directly. See ``benchmarks/bench_training.py`` for the cost.

Everything that changes along a run is a pure function of the iteration, so that a run can be cut anywhere and
continued exactly, and so that IMP can rewind to iteration ``K`` (Frankle et al. 2020) and replay the rest of the
original run:

- the learning rate, :func:`lr_at`;
- the data order: the batch of iteration ``i`` is slice ``i % S`` of the permutation of epoch ``i // S``
  (``S`` = :func:`steps_per_epoch`), drawn from ``torch.Generator().manual_seed(derive_seed(seed, DATA, epoch))``
  (:func:`epoch_permutation`, :func:`batch_indices`);
- the random stream of a batch augmentation, seeded per iteration.

Terms
-----
iteration
    One optimizer step (one batch). Iterations are counted from 0; "at iteration ``i``" means after ``i`` steps.
epoch
    :func:`steps_per_epoch` consecutive iterations; one pass over ``floor(n_train / batch_size) * batch_size``
    examples (the last incomplete batch of each epoch's permutation is dropped; which examples are dropped changes
    from epoch to epoch).
loss
    Mean cross-entropy in nats.
accuracy
    Fraction of examples whose arg-max logit is the true class.

Bit-exact resume
----------------
``train(..., stop_iteration=K)`` followed by ``train(..., start_iteration=K, state=result.state)`` gives, on CPU,
bit-identical weights (and the same curve) as one uninterrupted ``train`` call, provided that the second call gets

1. the model exactly as the first call left it (all parameters *and buffers*, e.g. batch-norm statistics);
2. ``state`` (:class:`TrainState`: optimizer state such as momentum buffers, Adam moments and step counts; the
   torch RNG state used by dropout; the curve and the running train-loss window);
3. the same ``masks``, ``data`` (same tensors, same order), ``config``, ``seed`` and ``augment`` function;
4. the same torch build, device and number of threads (``torch.get_num_threads()``); matrix-multiply kernels
   may split reductions differently with another thread count.

On GPUs the same holds only with deterministic kernels (``torch.use_deterministic_algorithms(True)``).
Without ``state`` the call starts a fresh optimizer (zero momentum), which is what weight rewinding does.

Modules
-------
- :mod:`~ticketlab.training.config`: :class:`TrainConfig`, the validated hyper-parameters of a run;
- :mod:`~ticketlab.training.optimizers`: the optimizer registry and :func:`make_optimizer`;
- :mod:`~ticketlab.training.schedules`: the learning-rate schedule registry and :func:`lr_at`;
- :mod:`~ticketlab.training.data_order`: seeds, epoch permutations and batches as functions of the iteration;
- :mod:`~ticketlab.training.masking`: :class:`MaskedParameters`, which holds pruned weights at zero;
- :mod:`~ticketlab.training.inference`: :func:`evaluate`, loss and predictions on a held-out set;
- :mod:`~ticketlab.training.state`: :class:`TrainResult` and the resume state :class:`TrainState`;
- :mod:`~ticketlab.training.loop`: :func:`train`, the training loop;
- :mod:`~ticketlab.training.checks`: argument checks shared by the modules above.
"""

from ticketlab.training.config import TrainConfig
from ticketlab.training.data_order import (
    AUGMENT_STREAM,
    DATA_STREAM,
    MODEL_RNG_STREAM,
    batch_indices,
    derive_seed,
    epoch_permutation,
    iterations_from_epochs,
    steps_per_epoch,
)
from ticketlab.training.inference import evaluate
from ticketlab.training.loop import train
from ticketlab.training.masking import MaskedParameters, apply_masks, unwrap_model
from ticketlab.training.optimizers import (
    OPTIMIZER_REGISTRY,
    OPTIMIZERS,
    get_optimizer,
    list_optimizers,
    make_optimizer,
    register_optimizer,
)
from ticketlab.training.schedules import (
    SCHEDULE_REGISTRY,
    SCHEDULES,
    get_schedule,
    list_schedules,
    lr_at,
    register_schedule,
)
from ticketlab.training.state import CURVE_COLUMNS, TrainResult, TrainState

# The stream tags under their former private names (tests derive the data order's seed with them).
_DATA_STREAM, _AUGMENT_STREAM, _MODEL_RNG_STREAM = DATA_STREAM, AUGMENT_STREAM, MODEL_RNG_STREAM

__all__ = [
    "TrainConfig",
    "TrainResult",
    "TrainState",
    "MaskedParameters",
    "apply_masks",
    "train",
    "evaluate",
    "lr_at",
    "iterations_from_epochs",
    "steps_per_epoch",
    "epoch_permutation",
    "batch_indices",
    "derive_seed",
    "make_optimizer",
    "unwrap_model",
    "register_optimizer",
    "get_optimizer",
    "list_optimizers",
    "register_schedule",
    "get_schedule",
    "list_schedules",
    "CURVE_COLUMNS",
    "OPTIMIZERS",
    "OPTIMIZER_REGISTRY",
    "SCHEDULES",
    "SCHEDULE_REGISTRY",
]
