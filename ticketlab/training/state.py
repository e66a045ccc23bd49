"""What a :func:`~ticketlab.training.train` call hands back: :class:`TrainResult` (the curve and the final
evaluation) and :class:`TrainState` (what the next call needs to continue the run bit-exactly)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

import numpy as np

from ticketlab.errors import ConfigError

__all__ = ["CURVE_COLUMNS", "TrainResult", "TrainState"]

#: Columns of a training curve, in order. ``iteration`` is int64, the rest float64 (losses in nats, accuracies
#: as fractions, ``nan`` where the set was not given or, for ``train_loss``, where no step preceded the evaluation).
CURVE_COLUMNS = ("iteration", "train_loss", "val_loss", "val_accuracy", "test_loss", "test_accuracy", "lr")


@dataclass
class TrainState:
    """What an interrupted :func:`~ticketlab.training.train` call needs to continue exactly (see
    :mod:`ticketlab.training`, "Bit-exact resume").

    Attributes
    ----------
    iteration : int
        Iterations (optimizer steps) completed; the next call must start here.
    seed : int
        The ``seed`` of the run.
    config : dict
        ``TrainConfig.to_dict()`` of the run.
    optimizer : dict
        ``optimizer.state_dict()`` (momentum buffers, Adam moments and step counts, hyper-parameters).
    rng : dict of str to Tensor
        Torch RNG states used by the model's own randomness (dropout): ``"cpu"``, and ``"cuda"`` on a GPU.
    curve : dict of str to list
        The scheduled evaluations so far (columns :data:`CURVE_COLUMNS`).
    window_loss_sum : float
        Sum of the per-step training losses (nats) since the last scheduled evaluation.
    window_steps : int
        Number of steps in that sum.
    run_start : int
        ``start_iteration`` of the run's first call (0, or ``K`` for a network retrained from a rewind point).
    wall_time : float
        Seconds spent in all the run's calls so far.
    """

    iteration: int
    seed: int
    config: dict
    optimizer: dict
    rng: dict
    curve: dict
    window_loss_sum: float = 0.0
    window_steps: int = 0
    run_start: int = 0
    wall_time: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (tensors included) for ``torch.save``."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrainState":
        """Inverse of :meth:`to_dict`."""
        required = [f.name for f in fields(cls) if f.default is dataclasses.MISSING]
        missing = [n for n in required if n not in d]
        if missing:
            raise ConfigError(f"training state lacks {', '.join(missing)}; was it written by TrainState.to_dict?")
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})


@dataclass
class TrainResult:
    """Outcome of one :func:`train` call.

    Attributes
    ----------
    curve : dict of str to 1-D ndarray
        Columns :data:`CURVE_COLUMNS`, one row per evaluation: at every multiple of ``eval_every``, at
        ``config.iterations`` and at the call's ``stop_iteration``; for a resumed call the rows of the earlier
        call(s) come first. ``train_loss`` is the mean training loss over the steps since the previous scheduled
        evaluation (nats); ``lr`` is :func:`lr_at` of the row's iteration.
    early_stop_iteration : int or None
        Iteration of the minimum validation loss in ``curve`` (first one on ties); ``None`` without validation set.
    start_iteration, stop_iteration : int
        The iterations ``[start, stop)`` run by this call.
    run_start_iteration : int
        ``start_iteration`` of the run's first call (differs from ``start_iteration`` after a resume).
    val_loss, val_accuracy, test_loss, test_accuracy : float
        At ``stop_iteration`` (nats, fractions); ``nan`` for a set not given.
    test_predictions : ndarray of shape (N_test,), int64, or None
        Predicted class of every test example at ``stop_iteration``.
    test_targets : ndarray of shape (N_test,), int64, or None
        The test labels, for :meth:`to_evaluation`.
    num_classes : int
        Width of the model's output (0 when nothing was evaluated).
    wall_time : float
        Seconds spent in this call, training and evaluation.
    state : TrainState
        Pass to the next call (``state=``) to continue exactly.
    """

    curve: dict[str, np.ndarray]
    early_stop_iteration: int | None
    start_iteration: int
    stop_iteration: int
    run_start_iteration: int = 0
    val_loss: float = math.nan
    val_accuracy: float = math.nan
    test_loss: float = math.nan
    test_accuracy: float = math.nan
    test_predictions: np.ndarray | None = None
    test_targets: np.ndarray | None = None
    num_classes: int = 0
    wall_time: float = 0.0
    state: TrainState | None = field(default=None, repr=False)

    @property
    def iterations(self) -> int:
        """Optimizer steps run by this call."""
        return self.stop_iteration - self.start_iteration

    def to_evaluation(self, num_classes: int | None = None):
        """The :class:`ticketlab.evaluation.Evaluation` of the test set at ``stop_iteration``.

        Its ``iterations`` is ``stop_iteration``, the position in the schedule the network reached (for a network
        retrained from rewind point ``K`` this includes the ``K`` steps of the run it was rewound into; the steps
        of this run alone are ``stop_iteration - run_start_iteration``), and its ``wall_time`` the seconds of all
        the run's calls.
        """
        from ticketlab.evaluation import Evaluation

        if self.test_predictions is None:
            raise ConfigError("no test set was evaluated; pass test=(x, y) to train()")
        return Evaluation.from_predictions(
            self.test_targets,
            self.test_predictions,
            self.test_loss,
            num_classes or self.num_classes,
            curve=self.curve,
            early_stop_iteration=self.early_stop_iteration,
            iterations=self.stop_iteration,
            wall_time=self.state.wall_time if self.state is not None else self.wall_time,
        )
