"""Runs and their layers: one row per level (and control branch) of each file, or per level and masked tensor.

Every frame carries the run's identity columns (:mod:`ticketlab.frames.identity`)::

    file    the ticket file's path (str)
    model   model name, e.g. "lenet300"
    method  a short method name that tells the given runs apart, e.g. "rewind-init"
    seed    the run's seed (None for imports)
    run     a unique label naming the run by method and seed, e.g. "rewind-init, seed 0"
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from ticketlab.analysis.sparsity import sparsity_table
from ticketlab.errors import TicketFileError
from ticketlab.frames.files import PathLike, closing, opened
from ticketlab.frames.identity import run_infos
from ticketlab.store import TicketFile, check_same_model, parse_spec, select

#: Columns of :func:`runs_frame`.
RUN_COLUMNS = ["file", "model", "dataset", "method", "method_description", "seed", "run", "line", "level", "branch",
               "kept", "size", "density", "sparsity", "compression", "accuracy", "loss", "early_stop_iteration",
               "iterations"]


def _line(method: str, branch: Any, model: str | None = None) -> str:
    name = method if branch is None or (isinstance(branch, float) and np.isnan(branch)) else f"{method} / {branch}"
    return f"{model}: {name}" if model else name


def runs_frame(paths: Sequence[PathLike | TicketFile], *, branches: bool = True) -> pd.DataFrame:
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
    with opened(paths) as tickets:
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


def layers_frame(paths: Sequence[PathLike | TicketFile]) -> pd.DataFrame:
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
    with opened(paths) as tickets:
        for t, info in zip(tickets, run_infos(tickets)):
            s = t.layer_summary()
            for i, (key, value) in enumerate(info.columns().items()):
                s.insert(i, key, value)
            frames.append(s)
    return pd.concat(frames, ignore_index=True)


def run_table(paths: Sequence[PathLike | TicketFile]) -> pd.DataFrame:
    """One row per file: its identity, status, levels, control branches and its first and last level's numbers.

    Returns
    -------
    pandas.DataFrame
        ``run`` (label), ``file``, ``model``, ``dataset``, ``method_description`` (as recorded), ``seed``,
        ``status``, ``levels`` (list of int), ``controls`` (sorted list of the control branches present),
        ``density`` and ``compression`` at the last level, ``dense_accuracy`` (level 0; None if absent or not
        evaluated) and ``accuracy`` at the last level.
    """
    rows = []
    with opened(paths) as tickets:
        for t, info in zip(tickets, run_infos(tickets)):
            levels = t.levels
            last = t.level_record(levels[-1]) if levels else {}
            first = t.level_record(levels[0]) if levels else {}
            rows.append({
                "run": info.run, "file": info.file, "model": t.model, "dataset": info.dataset,
                "method_description": info.method_description, "seed": info.seed, "status": t.status,
                "levels": levels, "controls": sorted({b for lv in levels for b in t.branches(lv)}),
                "density": last.get("density"), "compression": last.get("compression"),
                "dense_accuracy": first.get("accuracy") if levels and levels[0] == 0 else None,
                "accuracy": last.get("accuracy"),
            })
    return pd.DataFrame(rows).astype({"seed": "Int64"})


def sparsity_frames(specs: Sequence[str], level: int | None = None) -> list[pd.DataFrame]:
    """What ``ticketlab sparsity`` prints: per file, :func:`ticketlab.analysis.sparsity.sparsity_table` of its
    levels from the stored kept counts (no mask is unpacked).

    Parameters
    ----------
    specs : sequence of str
        ``FILE`` or ``FILE:LEVEL``; the files must hold one model.
    level : int, optional
        The level of every file without ``:LEVEL``. Without either, every level of the file.

    Returns
    -------
    list of pandas.DataFrame
        One per file, in order: columns ``file``, ``model``, ``method`` (the recorded description), ``seed``,
        then those of :func:`~ticketlab.analysis.sparsity.sparsity_table` (``level``, ``layer``, ..., ``density``,
        ``sparsity``, ``compression``, ``fully_pruned``, ``untouched``), a ``"total"`` row after each level.
    """
    with closing(select(specs, level)) as sels:
        check_same_model(sels)
        frames = []
        for s in sels:
            t = s.ticket
            explicit = parse_spec(s.spec)[1] is not None or level is not None
            levels = [s.level] if explicit else t.levels
            frames.append(sparsity_table({lv: t.kept(lv) for lv in levels}, t.tensors, file=str(s.path),
                                         model=t.model, method=t.method, seed=t.seed))
    return frames


__all__ = ["RUN_COLUMNS", "runs_frame", "layers_frame", "run_table", "sparsity_frames"]
