"""The evaluation of one trained network on the test set: what a ticket file stores per level.

Accuracy and per-class accuracy are derived from the confusion matrix, which is derived from the predictions
and the true labels, so the numbers stored in a file are consistent by construction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from ticketlab.errors import ConfigError


def confusion_matrix(targets: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts ``C[i, j]`` of examples of true class ``i`` predicted as class ``j``; shape ``(C, C)``, int64."""
    targets = np.asarray(targets, dtype=np.int64)
    predictions = np.asarray(predictions, dtype=np.int64)
    if targets.shape != predictions.shape or targets.ndim != 1:
        raise ConfigError(
            f"targets and predictions must be 1-D of one length; got {targets.shape} and {predictions.shape}"
        )
    for what, arr in (("targets", targets), ("predictions", predictions)):
        if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
            raise ConfigError(f"{what} must lie in [0, {num_classes}); got values in [{arr.min()}, {arr.max()}]")
    return np.bincount(targets * num_classes + predictions, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


@dataclass
class Evaluation:
    """Test-set evaluation of one network.

    Attributes
    ----------
    loss : float
        Mean cross-entropy over the test set, in nats.
    predictions : ndarray of shape (N,), int
        Predicted class of every test example, in the dataset's order.
    confusion : ndarray of shape (C, C), int64
        ``confusion[i, j]`` = number of examples of true class ``i`` predicted as ``j``.
    curve : dict of str to 1-D ndarray
        The training curve as columns of equal length; ``"iteration"`` is the first column, others are e.g.
        ``"train_loss"``, ``"val_loss"``, ``"val_accuracy"``, ``"test_accuracy"``, ``"lr"`` (losses in nats,
        accuracies as fractions).
    early_stop_iteration : int or None
        Training iteration at which the validation loss was minimal (Frankle & Carbin 2019's early-stopping
        criterion); ``None`` when no validation loss was recorded.
    iterations : int
        The schedule iteration at which the network was evaluated: the end of its training (T for a full
        schedule, also when retraining replayed only [K, T) after rewinding to iteration K).
    wall_time : float
        Seconds of wall-clock time spent training and evaluating it.
    """

    loss: float
    predictions: np.ndarray
    confusion: np.ndarray
    curve: dict[str, np.ndarray] = field(default_factory=dict)
    early_stop_iteration: int | None = None
    iterations: int = 0
    wall_time: float = 0.0

    def __post_init__(self) -> None:
        self.predictions = np.asarray(self.predictions, dtype=np.int64)
        self.confusion = np.asarray(self.confusion, dtype=np.int64)
        c = self.confusion
        if c.ndim != 2 or c.shape[0] != c.shape[1]:
            raise ConfigError(f"confusion matrix must be square; got shape {c.shape}")
        if int(c.sum()) != self.predictions.size:
            raise ConfigError(
                f"confusion matrix counts {int(c.sum())} examples but there are {self.predictions.size} predictions"
            )
        curve = {str(k): np.asarray(v) for k, v in self.curve.items()}
        lengths = {k: v.shape for k, v in curve.items()}
        if len({s for s in lengths.values()}) > 1 or any(len(s) != 1 for s in lengths.values()):
            raise ConfigError(f"training-curve columns must be 1-D of equal length; got {lengths}")
        self.curve = curve

    @classmethod
    def from_predictions(
        cls,
        targets: np.ndarray,
        predictions: np.ndarray,
        loss: float,
        num_classes: int,
        curve: Mapping[str, np.ndarray] | None = None,
        early_stop_iteration: int | None = None,
        iterations: int = 0,
        wall_time: float = 0.0,
    ) -> "Evaluation":
        """Build an evaluation from the true labels and the predicted labels of the test set."""
        return cls(
            loss=float(loss),
            predictions=np.asarray(predictions, dtype=np.int64),
            confusion=confusion_matrix(targets, predictions, num_classes),
            curve=dict(curve or {}),
            early_stop_iteration=early_stop_iteration,
            iterations=int(iterations),
            wall_time=float(wall_time),
        )

    @property
    def num_classes(self) -> int:
        return int(self.confusion.shape[0])

    @property
    def accuracy(self) -> float:
        """Fraction of test examples classified correctly."""
        total = self.confusion.sum()
        return float(np.trace(self.confusion) / total) if total else float("nan")

    @property
    def per_class_accuracy(self) -> np.ndarray:
        """Recall of each class: correct / examples of that class; shape ``(C,)``, ``nan`` for absent classes."""
        support = self.confusion.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(support > 0, np.diag(self.confusion) / np.maximum(support, 1), np.nan)
