"""Pruning strategies: pure functions from (weights, current masks, rate) to new, nested masks.

Every strategy is registered under a name (:data:`STRATEGIES`, :func:`list_strategies`, :func:`get_strategy`)
and called through :func:`prune`. Nothing here touches an ``nn.Module`` or a file: weights come in as tensors or
arrays, masks as ``dict[str, numpy.ndarray[bool]]`` (``True`` = kept, see :mod:`ticketlab.masks`), and new masks
go out.

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

Modules
-------
- :mod:`~ticketlab.pruning.registry`: :class:`PruningStrategy` entries and the :data:`STRATEGIES` registry;
- :mod:`~ticketlab.pruning.counts`: the counting rule and the choice of which candidates to prune;
- :mod:`~ticketlab.pruning.inputs`: validation and conversion of weights, masks and rates;
- :mod:`~ticketlab.pruning.unstructured`: the magnitude and random strategies on single weights;
- :mod:`~ticketlab.pruning.structured`: the strategies that prune whole output channels;
- :mod:`~ticketlab.pruning.level`: :func:`prune`, one pruning level through a registered strategy;
- :mod:`~ticketlab.pruning.controls`: the shuffled and random control masks.
"""

from ticketlab.pruning.registry import (
    STRATEGIES,
    PruningStrategy,
    StrategyFunc,
    get_strategy,
    list_strategies,
    register_strategy,
)
from ticketlab.pruning.counts import count_to_prune
from ticketlab.pruning import unstructured as _unstructured, structured as _structured  # noqa: F401  (register)
from ticketlab.pruning.level import prune
from ticketlab.pruning.controls import random_mask_like, shuffle_mask

__all__ = [
    "STRATEGIES",
    "PruningStrategy",
    "count_to_prune",
    "get_strategy",
    "list_strategies",
    "prune",
    "random_mask_like",
    "register_strategy",
    "shuffle_mask",
]
