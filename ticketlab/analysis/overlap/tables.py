"""Tidy overlap tables: per layer and in total, every count and metric of a pair of masks beside its chance level.

:func:`overlap_table` turns per-layer :class:`~ticketlab.analysis.overlap.counts.OverlapCounts` into one row per
layer plus the model total; :func:`pairwise_overlap` and :func:`mask_overlap` do it for masks held in memory;
:func:`jaccard_matrix` folds a pairwise frame into a square matrix.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ticketlab.analysis.overlap.chance import (expected_intersection, expected_jaccard, intersection_pvalue,
                                               total_intersection_pvalue)
from ticketlab.analysis.overlap.counts import OverlapCounts, pack, packed_overlap_counts, total_counts
from ticketlab.analysis.overlap.metrics import (METRICS, OverlapMetric, dice_overlap, get_metric,
                                                jaccard_overlap, overlap_coefficient)
from ticketlab.errors import ConfigError

__all__ = ["OVERLAP_COLUMNS", "overlap_table", "pairwise_overlap", "mask_overlap", "jaccard_matrix"]


#: Columns of :func:`overlap_table`, after the caller's label columns and before the extra metrics.
OVERLAP_COLUMNS = ["layer", "size", "kept_a", "kept_b", "density_a", "density_b", "intersection", "union",
                   "hamming", "jaccard", "dice", "overlap_coefficient", "expected_intersection",
                   "expected_jaccard", "ratio", "p_value", "p_method"]


def _row(layer: str, c: OverlapCounts, expected: float, expected_j: float, p: float, p_method: str,
         metrics: Sequence[OverlapMetric]) -> dict[str, Any]:
    row = {
        "layer": layer, "size": c.size, "kept_a": c.kept_a, "kept_b": c.kept_b,
        "density_a": c.kept_a / c.size if c.size else float("nan"),
        "density_b": c.kept_b / c.size if c.size else float("nan"),
        "intersection": c.intersection, "union": c.union, "hamming": c.hamming,
        "jaccard": jaccard_overlap(c), "dice": dice_overlap(c), "overlap_coefficient": overlap_coefficient(c),
        "expected_intersection": expected, "expected_jaccard": expected_j,
        "ratio": c.intersection / expected if expected > 0 else float("nan"),
        "p_value": p, "p_method": p_method,
    }
    for m in metrics:
        row[m.name] = m(c)
    return row


def overlap_table(counts: Mapping[str, OverlapCounts], *, metrics: Sequence[str] = (),
                  pvalue_method: str = "auto", total: bool = True, **columns: Any) -> pd.DataFrame:
    """Tidy overlap table of one pair of masks: one row per layer, then the model total.

    Parameters
    ----------
    counts : mapping of str to OverlapCounts
        Per-layer counts, in model order (from :func:`overlap_counts` or :func:`packed_overlap_counts`; the
        layer-at-a-time path for tickets larger than memory).
    metrics : sequence of str
        Extra registry metrics (:data:`METRICS`) to add as columns, e.g. ``["containment", "hamming_fraction"]``.
    pvalue_method : {"auto", "convolution", "normal"}
        How the total row's p-value is computed (:func:`total_intersection_pvalue`). Layer rows are always exact.
    total : bool
        Append the row ``layer == "total"`` (counts summed over layers; chance from per-layer sums).
    **columns
        Constant leading columns, e.g. ``a="run1.h5", b="run2.h5", level_a=3, level_b=3``.

    Returns
    -------
    pandas.DataFrame
        Columns: the ``columns`` keys, then ``layer``; ``size`` (N); ``kept_a``, ``kept_b``; ``density_a``,
        ``density_b`` (kept / N); ``intersection`` (|A∩B|); ``union`` (|A∪B|); ``hamming`` (|A Δ B|, a count);
        ``jaccard`` (|A∩B|/|A∪B|); ``dice`` (2|A∩B|/(|A|+|B|)); ``overlap_coefficient`` (|A∩B|/min(|A|,|B|));
        ``expected_intersection`` and ``expected_jaccard`` (chance level, see the module docstring); ``ratio``
        (observed / expected intersection, NaN when 0 is expected); ``p_value`` (one-sided P(X ≥ observed)
        under chance); ``p_method`` (``"hypergeometric"`` for layers, ``"convolution"`` or ``"normal"`` for the
        total); then one column per extra metric.
    """
    extra = [get_metric(m) for m in metrics]
    rows = []
    for layer, c in counts.items():
        e = expected_intersection(c.kept_a, c.kept_b, c.size)
        rows.append(_row(layer, c, e, expected_jaccard(c.kept_a, c.kept_b, c.size),
                         intersection_pvalue(c.intersection, c.kept_a, c.kept_b, c.size), "hypergeometric", extra))
    if total and counts:
        cs = list(counts.values())
        ka, kb, n = [c.kept_a for c in cs], [c.kept_b for c in cs], [c.size for c in cs]
        t = total_counts(cs)
        p, how = total_intersection_pvalue(t.intersection, ka, kb, n, method=pvalue_method)
        rows.append(_row("total", t, expected_intersection(ka, kb, n), expected_jaccard(ka, kb, n), p, how, extra))
    frame = pd.DataFrame(rows, columns=OVERLAP_COLUMNS + [m.name for m in extra])
    for i, (key, value) in enumerate(columns.items()):
        frame.insert(i, key, value)
    return frame


def _check_same_layers(masks: Mapping[str, Mapping[str, np.ndarray]]) -> list[str]:
    labels = list(masks)
    ref = masks[labels[0]]
    names = list(ref)
    for label in labels[1:]:
        other = masks[label]
        for name in names:
            if name not in other:
                raise ConfigError(f"{label!r} has no mask for layer {name!r}, which {labels[0]!r} has")
            if np.shape(other[name]) != np.shape(ref[name]):
                raise ConfigError(f"layer {name!r} has shape {np.shape(other[name])} in {label!r} but "
                                  f"{np.shape(ref[name])} in {labels[0]!r}")
        extra = [n for n in other if n not in ref]
        if extra:
            raise ConfigError(f"{label!r} has a mask for layer {extra[0]!r}, which {labels[0]!r} lacks")
    return names


def pairwise_overlap(masks: Mapping[str, Mapping[str, np.ndarray]], *, metrics: Sequence[str] = (),
                     pvalue_method: str = "auto") -> pd.DataFrame:
    """Overlap of every pair of several masks of one model, per layer and in total.

    Parameters
    ----------
    masks : mapping of str to mask
        ``{label: {layer name: bool array}}``, at least two; every mask must have the same layers and shapes.
    metrics, pvalue_method
        As for :func:`overlap_table`.

    Returns
    -------
    pandas.DataFrame
        :func:`overlap_table`'s columns preceded by ``a`` and ``b`` (the labels), for each pair ``a < b`` in the
        given order.
    """
    labels = list(masks)
    if len(labels) < 2:
        raise ConfigError(f"overlap needs at least two masks; got {len(labels)}")
    names = _check_same_layers(masks)
    frames = []
    packed = {label: {n: pack(np.asarray(masks[label][n])) for n in names} for label in labels}
    sizes = {n: int(np.size(masks[labels[0]][n])) for n in names}
    for la, lb in combinations(labels, 2):
        counts = {n: packed_overlap_counts(packed[la][n], packed[lb][n], sizes[n]) for n in names}
        frames.append(overlap_table(counts, metrics=metrics, pvalue_method=pvalue_method, a=la, b=lb))
    return pd.concat(frames, ignore_index=True)


def mask_overlap(masks_a: Mapping[str, np.ndarray], masks_b: Mapping[str, np.ndarray], *,
            labels: tuple[str, str] = ("a", "b"), metrics: Sequence[str] = (), pvalue_method: str = "auto"
            ) -> pd.DataFrame:
    """Overlap of two masks of one model: :func:`pairwise_overlap` of ``{labels[0]: masks_a, labels[1]: masks_b}``."""
    if labels[0] == labels[1]:
        raise ConfigError(f"the two labels must differ; got {labels}")
    return pairwise_overlap({labels[0]: masks_a, labels[1]: masks_b}, metrics=metrics, pvalue_method=pvalue_method)


def jaccard_matrix(frame: pd.DataFrame, value: str = "jaccard", layer: str = "total") -> pd.DataFrame:
    """Square symmetric matrix of one column of a pairwise overlap frame (default: the total Jaccard).

    Rows and columns are the labels in ``a``/``b`` in order of appearance; the diagonal is the metric's value of
    a mask with itself (1 for Jaccard).
    """
    rows = frame[frame["layer"] == layer]
    labels = list(dict.fromkeys(list(rows["a"]) + list(rows["b"])))
    diag = 1.0 if value in ("jaccard", "dice", "overlap_coefficient") else float("nan")
    if value in METRICS:
        diag = METRICS.get(value).identity
    out = pd.DataFrame(np.full((len(labels), len(labels)), np.nan), index=labels, columns=labels)
    for label in labels:
        out.loc[label, label] = diag
    for a, b, v in zip(rows["a"], rows["b"], rows[value]):
        out.loc[a, b] = v
        out.loc[b, a] = v
    return out
