"""Per-class accuracy drops: each class's drop from the dense network beside the overall drop."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from ticketlab.analysis.fairness.inputs import as_matrix, class_names_or_indices
from ticketlab.errors import ConfigError

__all__ = ["DROP_COLUMNS", "class_drops"]

DROP_COLUMNS = ["run", "seed", "level", "density", "class", "class_name", "class_accuracy",
                "dense_class_accuracy", "drop", "relative_drop", "accuracy", "dense_accuracy", "overall_drop",
                "overall_relative_drop", "excess_drop"]


def class_drops(
    class_accuracy: np.ndarray,
    accuracy: np.ndarray,
    *,
    levels: Sequence[int] | None = None,
    density: Sequence[float] | None = None,
    class_names: Sequence[str] | None = None,
    run: str | None = None,
    seed: int | None = None,
) -> pd.DataFrame:
    """Per level and class: class accuracy, its dense value, the drop, and the drop beyond the overall drop.

    Parameters
    ----------
    class_accuracy : ndarray of shape (L, C)
        Recall of each class (fraction) at each of L levels of one run; NaN for classes absent from the test set.
    accuracy : ndarray of shape (L,)
        Overall top-1 accuracy (fraction) at each level.
    levels : sequence of int, optional
        The level of each row (default ``0 .. L-1``). Level 0, the dense network, must be among them: it is the
        reference for every drop.
    density : sequence of float, optional
        Kept fraction of the masked weights at each level (copied into the ``density`` column).
    class_names : sequence of str, optional
        One per class; default the class indices as strings.
    run, seed : optional
        Labels copied into every row.

    Returns
    -------
    DataFrame
        One row per (level, class), columns :data:`DROP_COLUMNS`: ``drop = dense_class_accuracy -
        class_accuracy``, ``relative_drop = drop / dense_class_accuracy`` (NaN when the dense accuracy is 0),
        ``overall_drop = dense_accuracy - accuracy``, ``overall_relative_drop = overall_drop / dense_accuracy``,
        ``excess_drop = drop - overall_drop``.
    """
    per_class = as_matrix("class_accuracy", class_accuracy, 2)
    acc = np.asarray(accuracy, dtype=np.float64).reshape(-1)
    n_levels, n_classes = per_class.shape
    lv = np.arange(n_levels) if levels is None else np.asarray(levels, dtype=np.int64).reshape(-1)
    if acc.size != n_levels or lv.size != n_levels:
        raise ConfigError(f"class_accuracy has {n_levels} levels (rows) but accuracy has {acc.size} values and "
                          f"levels {lv.size}; give one of each per level")
    dens = np.full(n_levels, np.nan) if density is None else np.asarray(density, dtype=np.float64).reshape(-1)
    if dens.size != n_levels:
        raise ConfigError(f"density has {dens.size} values for {n_levels} levels")
    dense_rows = np.flatnonzero(lv == 0)
    if dense_rows.size != 1:
        raise ConfigError(f"levels must contain level 0 (the dense network) exactly once; got {lv.tolist()}")
    names = class_names_or_indices(n_classes, class_names)
    d = dense_rows[0]
    dense_class, dense_acc = per_class[d], acc[d]
    drop = dense_class[None, :] - per_class
    overall = dense_acc - acc
    with np.errstate(invalid="ignore", divide="ignore"):
        relative = np.where(dense_class[None, :] != 0, drop / dense_class[None, :], np.nan)
        overall_rel = overall / dense_acc if dense_acc != 0 else np.full(n_levels, np.nan)
    rows = {
        "run": run, "seed": seed,
        "level": np.repeat(lv, n_classes),
        "density": np.repeat(dens, n_classes),
        "class": np.tile(np.arange(n_classes), n_levels),
        "class_name": np.tile(np.asarray(names, dtype=object), n_levels),
        "class_accuracy": per_class.reshape(-1),
        "dense_class_accuracy": np.tile(dense_class, n_levels),
        "drop": drop.reshape(-1),
        "relative_drop": relative.reshape(-1),
        "accuracy": np.repeat(acc, n_classes),
        "dense_accuracy": dense_acc,
        "overall_drop": np.repeat(overall, n_classes),
        "overall_relative_drop": np.repeat(overall_rel, n_classes),
        "excess_drop": (drop - overall[:, None]).reshape(-1),
    }
    return pd.DataFrame(rows, columns=DROP_COLUMNS)
