"""Copying a ticket file into a new, compact one, optionally without weights (:func:`copy_ticket`).

HDF5 never shrinks a file when data is deleted; copying object by object into a new file is how a ticket file
is made smaller. The copy is written through :func:`ticketlab.outputs.atomic_output`, from a source checked as
every reader checks it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import h5py

from ticketlab.outputs import atomic_output
from ticketlab.store.level import _create_group
from ticketlab.store.reader import TicketFile
from ticketlab.store.schema import _check_new_path, _errors, _now, _open_h5

__all__ = ["copy_ticket"]


def copy_ticket(src: str | os.PathLike, dst: str | os.PathLike, *, level_weights: bool = True,
                checkpoints: Iterable[str] | None = None, overwrite: bool = False) -> Path:
    """Copy a ticket file, optionally leaving out weights, into a new compact file (written atomically).

    Parameters
    ----------
    src, dst : path-like
        Source ticket file and destination.
    level_weights : bool
        Keep the trained weights of levels and branches (``weights/`` and ``init_weights/`` groups). Without
        them the copy holds masks, evaluations, provenance and the run-wide checkpoints: enough for every
        analysis, not for ``--resume``.
    checkpoints : iterable of str, optional
        Run-wide checkpoints to keep (``"init"``, ``"rewind"``); default: all.
    overwrite : bool
        Replace ``dst`` if it exists.

    HDF5 never shrinks a file when data is deleted; copying object by object into a new file is how a ticket
    file is made smaller. The source is checked first as every reader checks it (each level's and branch's
    kept counts against its masks, evaluations against their predictions), so that nothing damaged is copied
    on; checksummed data keeps its checksums in the copy.
    """
    src, dst = Path(src), Path(dst)
    _check_new_path(dst, overwrite)
    with TicketFile(src) as t:
        t.summary()
    keep = None if checkpoints is None else set(checkpoints)
    with (_open_h5(src, "r") as fin, atomic_output(dst) as tmp,
          h5py.File(tmp, "w", track_order=True) as fout, _errors(src)):
        fout.attrs.update(dict(fin.attrs))
        for name, obj in fin.items():
            if name == "weights":
                w = _create_group(fout, "weights")
                for point, g in obj.items():
                    if keep is None or point in keep:
                        fin.copy(g, w, name=point)
            elif name == "levels":
                levels = _create_group(fout, "levels")
                for key, g in obj.items():
                    _copy_level(fin, g, levels, key, level_weights)
            else:
                fin.copy(obj, fout, name=name)
        fout.attrs["updated"] = _now()
    return dst


def _copy_level(fin: h5py.File, g: h5py.Group, parent: h5py.Group, key: str, weights: bool) -> None:
    out = _create_group(parent, key)
    out.attrs.update(dict(g.attrs))
    for name, obj in g.items():
        if name in ("weights", "init_weights") and not weights:
            continue
        if name == "branches":
            branches = _create_group(out, "branches")
            for b, bg in obj.items():
                _copy_level(fin, bg, branches, b, weights)
        else:
            fin.copy(obj, out, name=name)
