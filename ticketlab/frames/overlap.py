"""Mask overlap of ticket files: the one loop that reads masks layer by layer and counts their overlap.

Masks are compared bit-packed as stored (no unpacking), one tensor of every file in memory at a time, so tickets
far larger than memory can be compared. The counts become tables with
:func:`ticketlab.analysis.overlap.overlap_table`. Three views use the loop:

- :func:`compare_files` — what ``ticketlab overlap`` prints: every pair of ``FILE[:LEVEL]`` masks;
- :func:`overlap_frame` — every pair of (file, level) masks, labelled by run, for figures;
- :func:`level_overlap_frame` — every pair of runs at every level they share.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from ticketlab.analysis.overlap import OVERLAP_COLUMNS, jaccard_matrix, overlap_table, packed_overlap_counts
from ticketlab.errors import ConfigError, TicketFileError
from ticketlab.frames.files import PathLike, common_levels, opened, resolve_level, same_model, unique_tickets
from ticketlab.frames.identity import run_infos
from ticketlab.masks import TensorInfo
from ticketlab.store import Selection, TicketFile, check_same_model, select

#: One mask to compare: (label, open ticket file, level).
Entry = tuple[str, TicketFile, int]


def pairwise_tables(entries: Sequence[Entry], tensors: Sequence[TensorInfo],
                    pairs: Sequence[tuple[int, int]] | None = None, *, metrics: Sequence[str] = (),
                    pvalue_method: str = "auto", **columns: Any) -> list[pd.DataFrame]:
    """Overlap tables of pairs of masks, read one layer of every file at a time.

    Parameters
    ----------
    entries : sequence of (label, TicketFile, level)
        The masks; the files must hold ``tensors``.
    tensors : sequence of TensorInfo
        The common tensor table (:func:`ticketlab.store.check_same_model`).
    pairs : sequence of (i, j), optional
        Which entries to compare (default: every pair ``i < j``).
    metrics, pvalue_method
        As for :func:`ticketlab.analysis.overlap.overlap_table`.
    **columns
        Constant columns added to every table (e.g. ``level=3``).

    Returns
    -------
    list of pandas.DataFrame
        One :func:`~ticketlab.analysis.overlap.overlap_table` per pair, preceded by ``a``, ``b`` (the labels),
        ``file_a``, ``file_b``, ``level_a``, ``level_b`` and ``columns``.
    """
    pairs = list(combinations(range(len(entries)), 2)) if pairs is None else list(pairs)
    kept = [t.kept(lv) for _, t, lv in entries]
    counts: dict[tuple[int, int], dict] = {p: {} for p in pairs}
    for tensor in tensors:  # one layer of every file in memory at a time
        packed = [t.packed_mask(lv, tensor.name) for _, t, lv in entries]  # as stored: no unpacking
        for i, j in pairs:
            counts[(i, j)][tensor.name] = packed_overlap_counts(packed[i], packed[j], tensor.size,
                                                                kept_a=kept[i][tensor.name],
                                                                kept_b=kept[j][tensor.name])
        del packed
    return [overlap_table(counts[(i, j)], metrics=metrics, pvalue_method=pvalue_method, a=entries[i][0],
                          b=entries[j][0], file_a=str(entries[i][1].path), file_b=str(entries[j][1].path),
                          level_a=entries[i][2], level_b=entries[j][2], **columns)
            for i, j in pairs]


# ----------------------------------------------------------------------------------------------------------
# ticketlab overlap


@dataclass
class FileComparison:
    """Every pair of ``FILE[:LEVEL]`` masks compared, as ``ticketlab overlap`` prints it.

    Attributes
    ----------
    masks : list of (Path, int)
        The file and level of each mask, in the order given.
    pairs : list of (i, j)
        The pairs compared (indices into ``masks``), ``i < j``.
    tables : list of pandas.DataFrame
        One table per pair (:func:`pairwise_tables`; ``a`` and ``b`` are the file paths).
    metrics : list of str
        The extra metric columns (registry names).
    """

    masks: list[tuple[Path, int]]
    pairs: list[tuple[int, int]]
    tables: list[pd.DataFrame]
    metrics: list[str] = field(default_factory=list)

    @property
    def frame(self) -> pd.DataFrame:
        """Every pair's table in one frame."""
        return pd.concat(self.tables, ignore_index=True)

    @property
    def columns(self) -> list[str]:
        """The columns of the JSON/CSV output: labels, levels, :data:`OVERLAP_COLUMNS` and the extra metrics."""
        return ["a", "b", "level_a", "level_b"] + OVERLAP_COLUMNS + self.metrics

    def labels(self) -> list[str]:
        """Short unique names for the matrix: the file name, with ':LEVEL' when a name repeats."""
        names = [p.name for p, _ in self.masks]
        out = [f"{n}:{lv}" if names.count(n) > 1 else n for n, (_, lv) in zip(names, self.masks)]
        return [f"{label} ({k})" if out.count(label) > 1 else label for k, label in enumerate(out)]

    def matrix(self) -> pd.DataFrame:
        """The total Jaccard of every pair as a square matrix labelled by :meth:`labels`."""
        labels = self.labels()
        rows = [t.assign(a=labels[i], b=labels[j]) for (i, j), t in zip(self.pairs, self.tables)]
        return jaccard_matrix(pd.concat(rows, ignore_index=True))


def compare_files(specs: Sequence[str], *, level: int | None = None, metrics: Sequence[str] = (),
                  pvalue_method: str = "auto") -> FileComparison:
    """Overlap of every pair of ``FILE[:LEVEL]`` masks, per layer and in total: what ``ticketlab overlap`` prints.

    Parameters
    ----------
    specs : sequence of str
        At least two ``FILE`` or ``FILE:LEVEL`` specs of one model (one file may appear with several levels).
    level : int, optional
        The level of every file without ``:LEVEL`` (default: each file's last).
    metrics : sequence of str
        Extra overlap metrics (:data:`ticketlab.analysis.overlap.METRICS`) to add as columns.
    pvalue_method : str
        How the total's p-value is computed (:data:`ticketlab.analysis.overlap.PVALUE_METHODS`).
    """
    from ticketlab.analysis.overlap import get_metric

    if len(specs) < 2:
        raise ConfigError("overlap needs at least two ticket files, or two levels of one file "
                          "(e.g. run.h5:1 run.h5:5)")
    extra = [get_metric(m).name for m in dict.fromkeys(metrics)]
    sels: list[Selection] = select(specs, level)
    with contextlib.ExitStack() as stack:
        for s in sels:
            stack.enter_context(s.ticket)
        tensors = check_same_model(sels)
        entries = [(str(s.path), s.ticket, s.level) for s in sels]
        pairs = list(combinations(range(len(sels)), 2))
        tables = pairwise_tables(entries, tensors, pairs, metrics=extra, pvalue_method=pvalue_method)
    return FileComparison([(s.path, s.level) for s in sels], pairs, tables, extra)


# ----------------------------------------------------------------------------------------------------------
# Frames for figures


def overlap_frame(tickets: Sequence[tuple[PathLike | TicketFile, int | None]]) -> pd.DataFrame:
    """Overlap of every pair of (file, level) masks, per layer and in total, beside the chance level.

    Parameters
    ----------
    tickets : sequence of (path-like or TicketFile, int or None)
        At least two (file, level) pairs of one model; ``None`` = the file's last level. One file may appear
        with several levels.

    Returns
    -------
    pandas.DataFrame
        :func:`ticketlab.analysis.overlap.overlap_table`'s columns (per layer and ``layer == "total"``: kept
        counts, intersection, union, ``jaccard``, ``expected_jaccard`` under random placement, p-value, ...),
        preceded by ``a`` and ``b`` (labels: the run label, with ``":<level>"`` when one run appears at several
        levels), ``file_a``, ``file_b``, ``level_a``, ``level_b``. Feed it to
        :func:`ticketlab.analysis.overlap.jaccard_matrix` or :func:`ticketlab.plots.jaccard_heatmap`.
    """
    if len(tickets) < 2:
        raise ConfigError("overlap needs at least two masks: two files, or two levels of one file")
    paths = [p for p, _ in tickets]
    with opened(paths) as opened_tickets:
        by_file = {r.file: r.run for r in run_infos(unique_tickets(opened_tickets))}
        levels = [resolve_level(t, lv) for t, (_, lv) in zip(opened_tickets, tickets)]
        names = [by_file[str(t.path)] for t in opened_tickets]
        labels = [f"{n}:{lv}" if names.count(n) > 1 else n for n, lv in zip(names, levels)]
        entries = [(label, t, lv) for label, t, lv in zip(labels, opened_tickets, levels)]
        tensors = same_model(opened_tickets)
        return pd.concat(pairwise_tables(entries, tensors), ignore_index=True)


def level_overlap_frame(paths: Sequence[PathLike | TicketFile], *, levels: Sequence[int] | None = None,
                        include_dense: bool = False) -> pd.DataFrame:
    """Overlap of every pair of runs at each level they share: how alike independent tickets are, level by level.

    Parameters
    ----------
    paths : sequence of path-like or TicketFile
        At least two ticket files of one model (e.g. seeds or methods).
    levels : sequence of int, optional
        Levels to compare (default: every level present in all files).
    include_dense : bool
        Include level 0, where every mask keeps everything (Jaccard 1, as is its chance level).

    Returns
    -------
    pandas.DataFrame
        :func:`overlap_frame`'s columns for each pair ``a < b`` of runs (labelled by run) and each level, plus
        ``level`` (= ``level_a`` = ``level_b``), ``density`` (the mean of ``density_a`` and ``density_b``) and
        ``method_a``, ``method_b``, ``seed_a``, ``seed_b`` (the runs' short method names and seeds).
    """
    if len(paths) < 2:
        raise ConfigError("Jaccard against level needs at least two runs (ticket files) of one model")
    with opened(paths) as tickets:
        tensors = same_model(tickets)
        common = common_levels(tickets)
        wanted = list(common) if levels is None else list(levels)
        missing = [lv for lv in wanted if lv not in common]
        if missing:
            raise TicketFileError(f"level {missing[0]} is not present in every file; levels in all: "
                                  f"{', '.join(map(str, common)) or 'none'}")
        if not include_dense:
            wanted = [lv for lv in wanted if lv != 0]
        if not wanted:
            raise TicketFileError("the files share no pruned level to compare")
        infos = run_infos(tickets)
        labels = [r.run for r in infos]
        frames = []
        for lv in wanted:
            frames += pairwise_tables([(label, t, lv) for label, t in zip(labels, tickets)], tensors, level=lv)
    out = pd.concat(frames, ignore_index=True)
    out["density"] = (out["density_a"] + out["density_b"]) / 2
    by_label = {r.run: r for r in infos}
    for side in ("a", "b"):
        out[f"method_{side}"] = [by_label[x].method for x in out[side]]
        out[f"seed_{side}"] = pd.array([by_label[x].seed for x in out[side]], dtype="Int64")
    return out


__all__ = ["Entry", "pairwise_tables", "FileComparison", "compare_files", "overlap_frame", "level_overlap_frame"]
