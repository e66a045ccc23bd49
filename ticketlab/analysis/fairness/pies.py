"""Pruning-identified exemplars (PIEs, Hooker et al. 2019): votes, modal predictions, PIEs and their counts."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pandas as pd

from ticketlab.analysis.fairness.inputs import class_names_or_indices
from ticketlab.errors import ConfigError
from ticketlab.registry import Registry

__all__ = ["TIES", "PIE_EXAMPLE_COLUMNS", "PIE_COUNT_COLUMNS", "MIN_PIE_MODELS", "vote_counts", "modal_predictions",
           "pruning_identified_exemplars", "pie_counts", "pie_caveat"]

#: How ties between equally frequent labels are broken when taking a modal prediction: each rule maps vote
#: counts of shape (N, C) to the modal label of each example.
TIES: Registry[Callable[[np.ndarray], np.ndarray]] = Registry("tie rule")
TIES.register("largest", lambda counts: counts.shape[1] - 1 - counts[:, ::-1].argmax(axis=1))  # mode().max()
TIES.register("smallest", lambda counts: counts.argmax(axis=1))

PIE_EXAMPLE_COLUMNS = ["level", "example", "label", "class_name", "dense_modal", "pruned_modal", "dense_votes",
                       "pruned_votes", "pie", "dense_modal_correct", "pruned_modal_correct", "dense_tie",
                       "pruned_tie", "n_dense", "n_pruned"]
PIE_COUNT_COLUMNS = ["level", "class", "class_name", "examples", "pies", "pie_fraction", "pies_pruned_correct",
                     "pies_dense_correct", "pies_tied", "n_dense", "n_pruned", "caveat"]

#: Fewer models than this in either population always draws a caveat on the PIE counts (Hooker et al. used 30
#: models per population; with 2, every disagreement between the models is a tie).
MIN_PIE_MODELS = 5


def vote_counts(predictions: np.ndarray, num_classes: int | None = None) -> np.ndarray:
    """How many models predict each label for each example.

    Parameters
    ----------
    predictions : ndarray of shape (R, N), int
        Predicted label of each of N examples by each of R models.
    num_classes : int, optional
        Default: the largest prediction + 1.

    Returns
    -------
    ndarray of shape (N, C), int64
    """
    preds = np.asarray(predictions)
    if preds.ndim == 1:
        preds = preds[None]
    if preds.ndim != 2 or preds.shape[0] == 0:
        raise ConfigError(f"predictions must be 2-D (models, examples) with at least one model; got {preds.shape}")
    preds = preds.astype(np.int64)
    if preds.size and preds.min() < 0:
        raise ConfigError(f"predictions must be class indices >= 0; got {preds.min()}")
    c = int(preds.max()) + 1 if num_classes is None else int(num_classes)
    if preds.size and preds.max() >= c:
        raise ConfigError(f"predictions must lie in [0, {c}); got a maximum of {preds.max()}")
    n = preds.shape[1]
    flat = (np.arange(n)[None, :] * c + preds).reshape(-1)
    return np.bincount(flat, minlength=n * c).reshape(n, c)


def modal_predictions(predictions: np.ndarray, num_classes: int | None = None, ties: str = "largest") -> np.ndarray:
    """The most frequent predicted label of each example over a population of models.

    Parameters
    ----------
    predictions : ndarray of shape (R, N), int
    num_classes : int, optional
    ties : {"largest", "smallest"}
        Which of several equally frequent labels wins: the largest (as Hooker et al.'s
        ``mode().max()``) or the smallest.

    Returns
    -------
    ndarray of shape (N,), int64
    """
    rule = TIES.get(ties)
    return rule(vote_counts(predictions, num_classes))


def pruning_identified_exemplars(
    dense_predictions: np.ndarray,
    pruned_predictions: np.ndarray,
    labels: np.ndarray,
    *,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    level: int | None = None,
    ties: str = "largest",
) -> pd.DataFrame:
    """Per test example: the modal label of the dense and of the pruned population, and whether it is a PIE.

    Parameters
    ----------
    dense_predictions : ndarray of shape (R0, N), int
        Predictions of each dense model on the N test examples.
    pruned_predictions : ndarray of shape (R1, N), int
        Predictions of each pruned model on the same examples, in the same order.
    labels : ndarray of shape (N,), int
        True label of each example.
    num_classes : int, optional
        Default: one more than the largest label or prediction.
    class_names : sequence of str, optional
    level : int, optional
        The pruned level, copied into the ``level`` column.
    ties : {"largest", "smallest"}
        Tie-breaking of the modal label (see :func:`modal_predictions`).

    Returns
    -------
    DataFrame
        One row per example, columns :data:`PIE_EXAMPLE_COLUMNS`; ``pie`` is ``dense_modal != pruned_modal``;
        ``dense_votes``/``pruned_votes`` are the fractions of the population that predict the modal label;
        ``dense_tie``/``pruned_tie`` say that several labels had the most votes, so the tie rule chose the modal
        label; ``n_dense``/``n_pruned`` are the models in each population.
    """
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    dense = np.asarray(dense_predictions)
    pruned = np.asarray(pruned_predictions)
    dense, pruned = (dense[None] if dense.ndim == 1 else dense), (pruned[None] if pruned.ndim == 1 else pruned)
    for what, p in (("dense_predictions", dense), ("pruned_predictions", pruned)):
        if p.ndim != 2 or p.shape[1] != labels.size:
            raise ConfigError(f"{what} must have shape (models, {labels.size}) to match the {labels.size} labels; "
                              f"got {p.shape}")
    if num_classes is None:
        num_classes = int(max(labels.max(initial=-1), dense.max(initial=-1), pruned.max(initial=-1))) + 1
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ConfigError(f"labels must lie in [0, {num_classes}); got values in [{labels.min()}, {labels.max()}]")
    names = class_names_or_indices(num_classes, class_names)
    d_counts, p_counts = vote_counts(dense, num_classes), vote_counts(pruned, num_classes)
    d_mode, p_mode = modal_predictions(dense, num_classes, ties), modal_predictions(pruned, num_classes, ties)
    idx = np.arange(labels.size)
    return pd.DataFrame({
        "level": level, "example": idx, "label": labels,
        "class_name": np.asarray(names, dtype=object)[labels] if labels.size else np.array([], dtype=object),
        "dense_modal": d_mode, "pruned_modal": p_mode,
        "dense_votes": d_counts[idx, d_mode] / dense.shape[0],
        "pruned_votes": p_counts[idx, p_mode] / pruned.shape[0],
        "pie": d_mode != p_mode,
        "dense_modal_correct": d_mode == labels, "pruned_modal_correct": p_mode == labels,
        "dense_tie": _tied(d_counts), "pruned_tie": _tied(p_counts),
        "n_dense": dense.shape[0], "n_pruned": pruned.shape[0],
    }, columns=PIE_EXAMPLE_COLUMNS)


def _tied(counts: np.ndarray) -> np.ndarray:
    """Whether several labels share the most votes, per example (vote counts of shape (N, C))."""
    if counts.shape[1] == 0:
        return np.zeros(counts.shape[0], dtype=bool)
    return (counts == counts.max(axis=1, keepdims=True)).sum(axis=1) > 1


def pie_caveat(n_dense: float, n_pruned: float, pies: int, tied: int, ties: str = "largest") -> str:
    """The caveat of a class's PIE count, ``""`` when there is none: fewer than :data:`MIN_PIE_MODELS` models in a
    population, or PIEs whose modal label was decided by the tie rule."""
    known = bool(np.isfinite(n_dense) and np.isfinite(n_pruned))
    few = known and min(n_dense, n_pruned) < MIN_PIE_MODELS
    if not (few or tied):
        return ""
    models = f"{int(n_dense)} dense and {int(n_pruned)} pruned models" if known else "models"
    return (f"modal labels over {models}: {tied} of {pies} PIEs rest on a tie between labels (broken to the "
            f"{ties} label)" + ("; Hooker et al. used 30 models per population" if few else ""))


def pie_counts(examples: pd.DataFrame, num_classes: int, class_names: Sequence[str] | None = None,
               ties: str = "largest") -> pd.DataFrame:
    """PIEs per true class, from the per-example frame of :func:`pruning_identified_exemplars`.

    Returns
    -------
    DataFrame
        One row per class, columns :data:`PIE_COUNT_COLUMNS`: ``examples`` (test examples of the class),
        ``pies``, ``pie_fraction = pies / examples`` (NaN for absent classes), ``pies_pruned_correct`` (PIEs whose
        pruned modal label is the true label), ``pies_dense_correct``, ``pies_tied`` (PIEs whose dense or pruned
        modal label was chosen by the tie rule ``ties``), the models per population and a ``caveat``
        (:func:`pie_caveat`) when the models are few or some PIEs rest on a tie.
    """
    names = class_names_or_indices(num_classes, class_names)
    labels = examples["label"].to_numpy(np.int64)
    pie = examples["pie"].to_numpy(bool)

    def count(sel: np.ndarray) -> np.ndarray:
        return np.bincount(labels[sel], minlength=num_classes)[:num_classes]

    total = count(np.ones_like(pie))
    pies = count(pie)
    if {"dense_tie", "pruned_tie"} <= set(examples.columns):
        tied = count(pie & (examples["dense_tie"].to_numpy(bool) | examples["pruned_tie"].to_numpy(bool)))
    else:
        tied = np.zeros(num_classes, dtype=np.int64)
    n_models = [float(examples[k].iloc[0]) if k in examples.columns and len(examples) else np.nan
                for k in ("n_dense", "n_pruned")]
    levels = examples["level"].dropna().unique()
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(total > 0, pies / np.maximum(total, 1), np.nan)
    return pd.DataFrame({
        "level": levels[0] if len(levels) == 1 else None, "class": np.arange(num_classes), "class_name": names,
        "examples": total, "pies": pies, "pie_fraction": frac,
        "pies_pruned_correct": count(pie & examples["pruned_modal_correct"].to_numpy(bool)),
        "pies_dense_correct": count(pie & examples["dense_modal_correct"].to_numpy(bool)),
        "pies_tied": tied, "n_dense": n_models[0], "n_pruned": n_models[1],
        "caveat": [pie_caveat(*n_models, int(p), int(t), ties) for p, t in zip(pies, tied)],
    }, columns=PIE_COUNT_COLUMNS)
