"""Structure of ticket files' masks: fully pruned groups and effective density per level, and one layer's mask.

The analyses are :mod:`ticketlab.analysis.structure`; this module reads the masks they take.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from ticketlab.analysis.structure import effective_density, group_structure
from ticketlab.errors import ConfigError, TicketFileError
from ticketlab.frames.files import PathLike, closing, opened, resolve_level
from ticketlab.frames.identity import run_infos
from ticketlab.store import TicketFile, parse_spec, select


def structure_frame(paths: Sequence[PathLike | TicketFile], *, level: int | None = None) -> pd.DataFrame:
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
    frames = []
    with opened(paths) as tickets:
        for t, info in zip(tickets, run_infos(tickets)):
            lv = resolve_level(t, level)
            df = group_structure(t.masks(lv), t.tensors)
            df.insert(0, "level", lv)
            for i, (key, value) in enumerate(info.columns().items()):
                df.insert(i, key, value)
            frames.append(df)
    return pd.concat(frames, ignore_index=True)


def effective_density_frame(paths: Sequence[PathLike | TicketFile], *, level: int | None = None) -> pd.DataFrame:
    """:func:`ticketlab.analysis.structure.effective_density` of each file's level, with the run identity.

    Parameters
    ----------
    paths : sequence of path-like or TicketFile
        Files of plain feed-forward models (others are refused, see
        :func:`~ticketlab.analysis.structure.feedforward_chain`).
    level : int, optional
        The level of every file that has it; the others (and every file by default) give their last level.

    Returns
    -------
    pandas.DataFrame
        ``file``, ``model``, ``method``, ``seed``, ``run``, ``level``, then the columns of ``effective_density``
        (one row per layer and a ``"total"`` row per file).
    """
    frames = []
    with opened(paths) as tickets:
        for t, info in zip(tickets, run_infos(tickets)):
            lv = level if level is not None and level in t.levels else resolve_level(t)
            df = effective_density(t.masks(lv), t.tensors)
            df.insert(0, "level", lv)
            for i, (key, value) in enumerate(info.columns().items()):
                df.insert(i, key, value)
            frames.append(df)
    return pd.concat(frames, ignore_index=True)


def structure_table(specs: Sequence[str], *, level: int | None = None, all_levels: bool = False,
                    effective: bool = False, simulations: int = 0, seed: int | None = 0) -> pd.DataFrame:
    """What ``ticketlab structure`` prints: group structure (or effective density) of each file's chosen levels.

    Parameters
    ----------
    specs : sequence of str
        ``FILE`` or ``FILE:LEVEL``.
    level : int, optional
        The level of every file without ``:LEVEL`` (default: each file's last).
    all_levels : bool
        Every level of each file instead (``:LEVEL`` and ``level`` are refused with it).
    effective : bool
        :func:`~ticketlab.analysis.structure.effective_density` instead of
        :func:`~ticketlab.analysis.structure.group_structure`.
    simulations, seed
        Monte Carlo p-values of the dispersion (``group_structure``).

    Returns
    -------
    pandas.DataFrame
        ``file``, ``level``, then the analysis' columns, one block per file and level.
    """
    if simulations < 0:
        raise ConfigError(f"--simulations must be >= 0; got {simulations}")
    if all_levels:
        if level is not None:
            raise ConfigError("--all-levels and --level cannot be combined; choose one")
        typed = [s for s in specs if parse_spec(s)[1] is not None]
        if typed:
            raise ConfigError(f"--all-levels uses every level, but {typed[0]!r} names one; drop ':LEVEL' or "
                              "--all-levels")
    frames = []
    with closing(select(specs, level)) as sels:
        for s in sels:
            t = s.ticket
            tensors = t.tensors
            for lv in (t.levels if all_levels else [s.level]):
                masks = t.masks(lv)
                if effective:
                    df = effective_density(masks, tensors)
                else:
                    df = group_structure(masks, tensors, simulations=simulations, seed=seed)
                df.insert(0, "level", lv)
                df.insert(0, "file", str(s.path))
                frames.append(df)
    return pd.concat(frames, ignore_index=True)


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


def layer_mask(path: PathLike | TicketFile, *, level: int | None = None, layer: str | None = None
               ) -> tuple[np.ndarray, str, int]:
    """One layer's mask of one level of a file.

    Returns
    -------
    (mask, layer, level)
        The boolean mask (the tensor's shape), the layer's name (default :func:`default_kernel_layer`) and the
        level read (default: the last).
    """
    with opened([path]) as (t,):
        lv = resolve_level(t, level)
        name = layer or default_kernel_layer(t.tensors)
        if name not in {x.name for x in t.tensors}:
            raise TicketFileError(f"{t.path}: no layer {name!r}; layers: {', '.join(x.name for x in t.tensors)}")
        shape = next(x.shape for x in t.tensors if x.name == name)
        if len(shape) < 2:
            raise ConfigError(f"layer {name!r} has shape {list(shape)}; a kernel heatmap needs a 2-D or conv weight")
        return t.mask(lv, name), name, lv


__all__ = ["structure_frame", "effective_density_frame", "structure_table", "default_kernel_layer", "layer_mask"]
