"""The loader layer: ticket files → the tidy DataFrames that the plotting functions take.

Everything here opens files; the plotting functions never do. Every frame carries the run's identity columns::

    file    the ticket file's path (str)
    model   model name, e.g. "lenet300"
    method  a short method name that tells the given runs apart (see :func:`method_labels`), e.g. "rewind-init"
    seed    the run's seed (None for imports)
    run     a unique label naming the run by method and seed, e.g. "rewind-init, seed 0"

Examples
--------
>>> runs = runs_frame(["lenet_rewind_s0.h5", "lenet_rewind_s1.h5"])       # doctest: +SKIP
>>> accuracy_vs_density(runs)                                             # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from itertools import combinations
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from ticketlab.errors import ConfigError, TicketFileError
from ticketlab.store import TicketFile

PathLike = str | os.PathLike

#: Columns of :func:`runs_frame`.
RUN_COLUMNS = ["file", "model", "dataset", "method", "method_description", "seed", "run", "line", "level", "branch",
               "kept", "size", "density", "sparsity", "compression", "accuracy", "loss", "early_stop_iteration",
               "iterations"]

_CONTROLS_RE = re.compile(r",\s*controls\s+[\w+\-]+\s*$")


# ----------------------------------------------------------------------------------------------------------
# Run identity


def _parts(method: str) -> list[str]:
    """A method description split at commas, without the controls (they are lines of their own)."""
    return [p.strip() for p in _CONTROLS_RE.sub("", method or "").split(",") if p.strip()]


def _short(part: str) -> str:
    return part[len("reset "):] if part.startswith("reset ") else part


def method_labels(methods: Iterable[str]) -> dict[str, str]:
    """Short names that tell methods apart, for legends.

    Method descriptions (``TicketFile.method``, e.g. ``"IMP layer_magnitude 20%/level, reset rewind-init,
    controls reinit"``) are split at commas; the controls are dropped (control branches are plotted as lines of
    their own), then every part that all the methods share. ``"reset X"`` is shortened to ``X``.

    Parameters
    ----------
    methods : iterable of str
        The method descriptions of the runs to be shown together.

    Returns
    -------
    dict of str to str
        ``{description: short name}``, e.g. ``{"IMP ..., reset rewind-init": "rewind-init",
        "IMP ..., reset lr-rewind": "lr-rewind"}``. With one method (or parts all shared) the name is its reset
        mode when it has one, else the description without controls.
    """
    methods = list(dict.fromkeys(methods))
    parts = {m: _parts(m) for m in methods}
    shared = set.intersection(*(set(p) for p in parts.values())) if methods else set()
    out = {}
    for m in methods:
        own = [p for p in parts[m] if p not in shared]
        if not own:
            resets = [p for p in parts[m] if p.startswith("reset ")]
            own = resets[-1:] if resets else parts[m]
        out[m] = ", ".join(_short(p) for p in own) or (m or "unknown method")
    return out


@dataclass
class RunInfo:
    """The identity of one ticket file, as the frames label it."""

    file: str
    model: str
    dataset: str | None
    method: str             # short name (see method_labels)
    method_description: str
    seed: int | None
    run: str                # unique label: "method, seed s"

    def columns(self) -> dict[str, Any]:
        return {"file": self.file, "model": self.model, "method": self.method, "seed": self.seed,
                "run": self.run}


def run_infos(tickets: Sequence[TicketFile]) -> list[RunInfo]:
    """Identity of each ticket file: short method names across all of them and unique run labels.

    The run label is ``"<method>, seed <s>"``, prefixed with the model when the files hold several models; when
    two files would still get one label, the file name is added.
    """
    labels = method_labels(t.method for t in tickets)
    models = {t.model for t in tickets}
    out = []
    for t in tickets:
        method = labels[t.method]
        ds = t.dataset
        run = method + (f", seed {t.seed}" if t.seed is not None else "")
        if len(models) > 1:
            run = f"{t.model}: {run}"
        out.append(RunInfo(str(t.path), t.model, None if ds is None else ds.name, method, t.method, t.seed, run))
    counts = pd.Series([r.run for r in out]).value_counts()
    for r in out:
        if counts[r.run] > 1:
            r.run = f"{r.run} ({os.path.basename(r.file)})"
    counts = pd.Series([r.run for r in out]).value_counts()
    for r in out:  # same file name twice (different directories): the full path
        if counts[r.run] > 1:
            r.run = f"{r.run} [{r.file}]"
    return out


@contextlib.contextmanager
def _opened(paths: Sequence[PathLike]) -> Any:
    """Open every path (closed again at the end; TicketFile objects are used as given), refusing an empty list."""
    if not paths:
        raise ConfigError("no ticket files given")
    with contextlib.ExitStack() as stack:
        tickets = []
        for p in paths:
            tickets.append(p if isinstance(p, TicketFile) else stack.enter_context(TicketFile(p)))
        yield tickets


def _line(method: str, branch: Any, model: str | None = None) -> str:
    name = method if branch is None or (isinstance(branch, float) and np.isnan(branch)) else f"{method} / {branch}"
    return f"{model}: {name}" if model else name


# ----------------------------------------------------------------------------------------------------------
# Frames


def runs_frame(paths: Sequence[PathLike], *, branches: bool = True) -> pd.DataFrame:
    """One row per level (and control branch) of each run: density, compression, accuracy, early stopping.

    Parameters
    ----------
    paths : sequence of path-like or TicketFile
        Ticket files.
    branches : bool
        Include the control branches (``reinit``, ``shuffle``, ``random``) as rows of their own.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`RUN_COLUMNS`: the run identity (``file``, ``model``, ``dataset``, ``method``,
        ``method_description`` = the file's full description, ``seed``, ``run``); ``line`` = what one plotted
        line stands for: the method, with ``" / <branch>"`` for a control branch and the model in front when the
        files hold several models; then :meth:`TicketFile.level_record`'s ``level``, ``branch`` (None for the
        main line), ``kept``, ``size`` (weights), ``density`` (kept / size), ``sparsity``, ``compression``
        (size / kept), ``accuracy`` (test accuracy, a fraction), ``loss`` (nats), ``early_stop_iteration``
        (iteration of minimum validation loss) and ``iterations``. Missing evaluations are NaN.
    """
    frames = []
    with _opened(paths) as tickets:
        infos = run_infos(tickets)
        several_models = len({t.model for t in tickets}) > 1
        for t, info in zip(tickets, infos):
            s = t.summary(branches=branches)
            if s.empty:
                continue
            s = s.astype({"branch": object})
            s["branch"] = [None if (b is None or (isinstance(b, float) and np.isnan(b))) else str(b)
                           for b in s["branch"]]
            for key, value in info.columns().items():
                s[key] = value
            s["dataset"] = info.dataset
            s["method_description"] = info.method_description
            s["line"] = [_line(info.method, b, info.model if several_models else None) for b in s["branch"]]
            frames.append(s)
    if not frames:
        raise TicketFileError("the ticket files have no levels yet")
    out = pd.concat(frames, ignore_index=True)
    for col in ("accuracy", "loss", "early_stop_iteration", "iterations"):
        out[col] = pd.to_numeric(out[col], errors="coerce").astype(float)
    return out[RUN_COLUMNS]


def layers_frame(paths: Sequence[PathLike]) -> pd.DataFrame:
    """One row per (run, level, masked tensor): :meth:`TicketFile.layer_summary` with the run identity.

    Parameters
    ----------
    paths : sequence of path-like or TicketFile
        Ticket files.

    Returns
    -------
    pandas.DataFrame
        ``file``, ``model``, ``method``, ``seed``, ``run``, then ``level``, ``layer`` (parameter name, in model
        order), ``kind``, ``shape`` (e.g. ``"300x784"``), ``pruned``, ``size``, ``kept``, ``density``,
        ``sparsity``, ``compression``.
    """
    frames = []
    with _opened(paths) as tickets:
        for t, info in zip(tickets, run_infos(tickets)):
            s = t.layer_summary()
            for i, (key, value) in enumerate(info.columns().items()):
                s.insert(i, key, value)
            frames.append(s)
    return pd.concat(frames, ignore_index=True)


def _same_tensors(tickets: Sequence[TicketFile]) -> list:
    ref = tickets[0].tensors
    for t in tickets[1:]:
        if [(x.name, x.shape) for x in t.tensors] != [(x.name, x.shape) for x in ref]:
            raise TicketFileError(f"{t.path} and {tickets[0].path} hold different models ({t.model} and "
                                  f"{tickets[0].model}); only tickets of one model can be compared")
    return ref


def _pairwise(entries: Sequence[tuple[str, TicketFile, int]], tensors: Sequence[Any],
              pairs: Sequence[tuple[int, int]] | None = None, **columns: Any) -> pd.DataFrame:
    """Overlap tables of pairs of (label, ticket, level), read one layer of every file at a time.

    This is the reading loop of ``ticketlab overlap``: masks are compared bit-packed as stored.
    """
    from ticketlab.analysis.overlap import overlap_table, packed_overlap_counts

    pairs = list(combinations(range(len(entries)), 2)) if pairs is None else list(pairs)
    kept = [t.kept(lv) for _, t, lv in entries]
    counts: dict[tuple[int, int], dict] = {p: {} for p in pairs}
    for tensor in tensors:
        packed = [t.packed_mask(lv, tensor.name) for _, t, lv in entries]
        for i, j in pairs:
            counts[(i, j)][tensor.name] = packed_overlap_counts(packed[i], packed[j], tensor.size,
                                                                kept_a=kept[i][tensor.name],
                                                                kept_b=kept[j][tensor.name])
    frames = [overlap_table(counts[(i, j)], a=entries[i][0], b=entries[j][0], file_a=str(entries[i][1].path),
                            file_b=str(entries[j][1].path), level_a=entries[i][2], level_b=entries[j][2], **columns)
              for i, j in pairs]
    return pd.concat(frames, ignore_index=True)


def overlap_frame(tickets: Sequence[tuple[PathLike, int | None]]) -> pd.DataFrame:
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
    with _opened(paths) as opened:
        infos = run_infos(_unique_tickets(opened))
        by_file = {r.file: r.run for r in infos}
        levels = []
        for t, (_, lv) in zip(opened, tickets):
            have = t.levels
            if not have:
                raise TicketFileError(f"{t.path}: has no levels yet")
            lv = have[-1] if lv is None else (have[lv] if lv < 0 and -lv <= len(have) else lv)
            if lv not in have:
                raise TicketFileError(f"{t.path}: no level {lv}; levels present: {', '.join(map(str, have))}")
            levels.append(lv)
        names = [by_file[str(t.path)] for t in opened]
        labels = [f"{n}:{lv}" if names.count(n) > 1 else n for n, lv in zip(names, levels)]
        entries = [(label, t, lv) for label, t, lv in zip(labels, opened, levels)]
        return _pairwise(entries, _same_tensors(opened))


def _unique_tickets(tickets: Sequence[TicketFile]) -> list[TicketFile]:
    seen: dict[str, TicketFile] = {}
    for t in tickets:
        seen.setdefault(str(t.path), t)
    return list(seen.values())


def level_overlap_frame(paths: Sequence[PathLike], *, levels: Sequence[int] | None = None,
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
    with _opened(paths) as tickets:
        tensors = _same_tensors(tickets)
        common = set(tickets[0].levels)
        for t in tickets[1:]:
            common &= set(t.levels)
        wanted = sorted(common) if levels is None else [lv for lv in levels]
        missing = [lv for lv in wanted if lv not in common]
        if missing:
            raise TicketFileError(f"level {missing[0]} is not present in every file; levels in all: "
                                  f"{', '.join(map(str, sorted(common))) or 'none'}")
        if not include_dense:
            wanted = [lv for lv in wanted if lv != 0]
        if not wanted:
            raise TicketFileError("the files share no pruned level to compare")
        infos = run_infos(tickets)
        labels = [r.run for r in infos]
        frames = []
        for lv in wanted:
            f = _pairwise([(label, t, lv) for label, t in zip(labels, tickets)], tensors, level=lv)
            frames.append(f)
    out = pd.concat(frames, ignore_index=True)
    out["density"] = (out["density_a"] + out["density_b"]) / 2
    by_label = {r.run: r for r in infos}
    for side in ("a", "b"):
        out[f"method_{side}"] = [by_label[x].method for x in out[side]]
        out[f"seed_{side}"] = pd.array([by_label[x].seed for x in out[side]], dtype="Int64")
    return out


def structure_frame(paths: Sequence[PathLike], *, level: int | None = None) -> pd.DataFrame:
    """:func:`ticketlab.analysis.structure.group_structure` of each file's level, with the run identity.

    Parameters
    ----------
    paths : sequence of path-like or TicketFile
    level : int, optional
        The level of every file (default: each file's last level).

    Returns
    -------
    pandas.DataFrame
        ``file``, ``model``, ``method``, ``seed``, ``run``, ``level``, then the columns of ``group_structure``
        (one row per layer and grouping: fully pruned fraction beside its random-placement mean and sd, ...).
    """
    from ticketlab.analysis.structure import group_structure

    frames = []
    with _opened(paths) as tickets:
        for t, info in zip(tickets, run_infos(tickets)):
            lv = _level(t, level)
            df = group_structure(t.masks(lv), t.tensors)
            df.insert(0, "level", lv)
            for i, (key, value) in enumerate(info.columns().items()):
                df.insert(i, key, value)
            frames.append(df)
    return pd.concat(frames, ignore_index=True)


def _level(t: TicketFile, level: int | None) -> int:
    have = t.levels
    if not have:
        raise TicketFileError(f"{t.path}: has no levels yet")
    if level is None:
        return have[-1]
    if level < 0 and -level <= len(have):
        return have[level]
    if level not in have:
        raise TicketFileError(f"{t.path}: no level {level}; levels present: {', '.join(map(str, have))}")
    return level


def default_kernel_layer(tensors: Sequence[Any]) -> str:
    """The layer a kernel heatmap shows by default: the conv layer with the most (output, input) kernels, else the
    2-D layer with the most weights."""
    convs = [t for t in tensors if t.kind == "conv" and len(t.shape) >= 3]
    if convs:
        return max(convs, key=lambda t: t.shape[0] * t.shape[1]).name
    two_d = [t for t in tensors if len(t.shape) >= 2]
    if not two_d:
        raise ConfigError("the model has no 2-D (linear) or conv weight to draw")
    return max(two_d, key=lambda t: t.size).name


def layer_mask(path: PathLike, *, level: int | None = None, layer: str | None = None) -> tuple[np.ndarray, str, int]:
    """One layer's mask of one level of a file.

    Returns
    -------
    (mask, layer, level)
        The boolean mask (the tensor's shape), the layer's name (default :func:`default_kernel_layer`) and the
        level read (default: the last).
    """
    with TicketFile(path) as t:
        lv = _level(t, level)
        name = layer or default_kernel_layer(t.tensors)
        if name not in {x.name for x in t.tensors}:
            raise TicketFileError(f"{t.path}: no layer {name!r}; layers: {', '.join(x.name for x in t.tensors)}")
        shape = next(x.shape for x in t.tensors if x.name == name)
        if len(shape) < 2:
            raise ConfigError(f"layer {name!r} has shape {list(shape)}; a kernel heatmap needs a 2-D or conv weight")
        return t.mask(lv, name), name, lv


def fairness_frames(paths: Sequence[PathLike], *, level: int | None = None) -> tuple[dict[str, pd.DataFrame], int]:
    """The fairness analyses of one population of runs (seeds of one method), as ``ticketlab fairness`` computes them.

    Parameters
    ----------
    paths : sequence of path-like or TicketFile
        Ticket files of one model with level 0 (the dense network) and a test-set evaluation at every level.
    level : int, optional
        The pruned level for the intensification scatter, Hooker et al.'s test and PIEs (default: the last
        level common to all files).

    Returns
    -------
    (sections, level)
        ``sections`` as :func:`ticketlab.analysis.fairness.fairness_analysis` returns them, keyed ``drops``,
        ``fit`` and, for two runs or more, ``hooker``, ``pies`` and ``pie_examples``; the runs are named by
        their run labels (method, seed). ``level`` is the pruned level used.
    """
    import argparse

    from ticketlab.analysis.fairness import SECTIONS, fairness_analysis
    from ticketlab.cli._select import check_same_model
    from ticketlab.cli.fairness import _resolve, load_runs

    specs = [str(p.path) if isinstance(p, TicketFile) else str(p) for p in paths]
    if not specs:
        raise ConfigError("no ticket files given")
    selections, lv = _resolve(argparse.Namespace(files=specs, level=level))
    try:
        check_same_model(selections)
        names = [r.run for r in run_infos([s.ticket for s in selections])]
        runs, labels, class_names = load_runs(selections, lv, names)
        several = len(selections) > 1
        sections = [s for s in SECTIONS if several or s in ("drops", "fit")]
        return fairness_analysis(runs, lv, labels=labels, class_names=class_names, sections=sections), lv
    finally:
        for s in selections:
            s.ticket.close()


__all__ = ["RUN_COLUMNS", "method_labels", "run_infos", "runs_frame", "layers_frame", "overlap_frame",
           "level_overlap_frame", "structure_frame", "layer_mask", "default_kernel_layer", "fairness_frames"]
