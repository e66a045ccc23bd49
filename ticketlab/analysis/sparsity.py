"""Layer-wise sparsity: how much of each tensor a mask keeps, per level, as a tidy table.

Vocabulary (``docs/conventions.md``): for a tensor of ``size`` weights of which ``kept`` are kept,

- *density* = kept / size (the kept fraction),
- *sparsity* = 1 − density,
- *compression* = size / kept (≥ 1; ``inf`` when nothing is kept).

A tensor is *fully pruned* when it keeps nothing (``kept == 0``; the network is disconnected there) and
*untouched* when it keeps everything (``kept == size``: every tensor at level 0, and tensors that are masked but
never pruned, such as an output layer left out). Totals pool the counts of all tensors (kept and size summed),
the convention of ``ticketlab info`` and OpenLTH's ``sparsity_report.json``: a total density is not the mean of
the per-layer densities.

Everything here works from per-tensor kept counts, so ticket files are summarised from their stored counts
(``TicketFile.kept``) without unpacking a mask.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ticketlab.errors import ConfigError
from ticketlab.masks import TensorInfo, compression, density, sparsity

#: Columns of :func:`sparsity_table` after the caller's constant columns.
SPARSITY_COLUMNS = ["level", "layer", "kind", "pruned", "size", "kept", "density", "sparsity", "compression",
                    "fully_pruned", "untouched"]


def _tensor_table(tensors: Sequence[TensorInfo] | Mapping[str, Any]) -> list[TensorInfo]:
    if isinstance(tensors, Mapping):
        out = []
        for name, value in tensors.items():
            shape = (int(value),) if np.ndim(value) == 0 else tuple(int(s) for s in value)
            out.append(TensorInfo(name, shape))
        return out
    return list(tensors)


def _record(level: Any, layer: str, kind: Any, pruned: Any, size: int, kept: int) -> dict[str, Any]:
    return {
        "level": level, "layer": layer, "kind": kind, "pruned": pruned, "size": size, "kept": kept,
        "density": density(kept, size), "sparsity": sparsity(kept, size), "compression": compression(kept, size),
        "fully_pruned": bool(size > 0 and kept == 0), "untouched": bool(size > 0 and kept == size),
    }


def sparsity_table(kept: Mapping[Any, Mapping[str, int]], tensors: Sequence[TensorInfo] | Mapping[str, Any], *,
                   totals: bool = True, **columns: Any) -> pd.DataFrame:
    """Tidy per-level, per-tensor sparsity table from kept counts.

    Parameters
    ----------
    kept : mapping of level to mapping of str to int
        ``{level: {tensor name: kept weights}}``, e.g. ``{L: ticket.kept(L) for L in ticket.levels}``. Every
        tensor of ``tensors`` must have a count.
    tensors : sequence of TensorInfo, or mapping of str to shape or size
        The masked tensors in model order (a ticket file's ``tensors``), or ``{name: shape}`` / ``{name: size}``.
    totals : bool
        After each level's tensors, add a row ``layer == "total"`` pooling all of them.
    **columns
        Constant leading columns, e.g. ``file="run.h5", model="lenet300", method="IMP ...", seed=0``.

    Returns
    -------
    pandas.DataFrame
        One row per (level, tensor) plus the total rows. Columns: the ``columns`` keys, then ``level``;
        ``layer`` (parameter name or ``"total"``); ``kind`` (``linear``/``conv``/``other``; None for totals);
        ``pruned`` (whether pruning acts on the tensor); ``size`` (weights); ``kept``; ``density``
        (kept / size); ``sparsity`` (1 − density); ``compression`` (size / kept, ``inf`` when nothing is kept);
        ``fully_pruned`` (kept == 0); ``untouched`` (kept == size).
    """
    table = _tensor_table(tensors)
    rows = []
    for level, counts in kept.items():
        missing = [t.name for t in table if t.name not in counts]
        if missing:
            raise ConfigError(f"level {level}: no kept count for tensor {missing[0]!r}")
        extra = [name for name in counts if name not in {t.name for t in table}]
        if extra:
            raise ConfigError(f"level {level}: kept count for unknown tensor {extra[0]!r}")
        for t in table:
            k = int(counts[t.name])
            if not 0 <= k <= t.size:
                raise ConfigError(f"level {level}: tensor {t.name!r} keeps {k} of {t.size} weights")
            rows.append(_record(level, t.name, t.kind, t.pruned, t.size, k))
        if totals:
            rows.append(_record(level, "total", None, None, sum(t.size for t in table),
                                sum(int(counts[t.name]) for t in table)))
    frame = pd.DataFrame(rows, columns=SPARSITY_COLUMNS)
    for i, (key, value) in enumerate(columns.items()):
        frame.insert(i, key, value)
    return frame


def mask_sparsity(masks: Mapping[str, np.ndarray] | Mapping[Any, Mapping[str, np.ndarray]], *,
                  level: Any = None, totals: bool = True, **columns: Any) -> pd.DataFrame:
    """:func:`sparsity_table` of masks held in memory.

    Parameters
    ----------
    masks : mapping of str to ndarray of bool
        One mask ``{tensor name: bool array}`` (reported as ``level``), or ``{level: mask}`` for several.
    level : optional
        The level label of a single mask (default None).
    totals, **columns
        As for :func:`sparsity_table`.
    """
    if masks and all(isinstance(v, Mapping) for v in masks.values()):
        by_level = dict(masks)
    else:
        by_level = {level: masks}
    if not by_level:
        raise ConfigError("no masks given")
    first = next(iter(by_level.values()))
    shapes = {name: np.shape(m) for name, m in first.items()}
    kept = {}
    for lv, m in by_level.items():
        if {n: np.shape(a) for n, a in m.items()} != shapes:
            raise ConfigError(f"level {lv}: the masks' tensors or shapes differ from those of the first level")
        kept[lv] = {name: int(np.count_nonzero(a)) for name, a in m.items()}
    return sparsity_table(kept, shapes, totals=totals, **columns)
