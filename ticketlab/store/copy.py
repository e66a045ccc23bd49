"""Copying a ticket file into a new, compact one, optionally without weights (:func:`copy_ticket`).

HDF5 never shrinks a file when data is deleted; copying object by object into a new file is how a ticket file
is made smaller. The copy is written through :func:`ticketlab.outputs.atomic_output`, from a source checked as
every reader checks it.

Copies are written in the HDF5 1.10 object format (``libver=("v110", "latest")``), dataset by dataset rather than
with ``H5Ocopy`` (which keeps each object's old layout): a checksummed (hence chunked) dataset then carries a
small chunk index instead of a version-1 B-tree of a few KiB, which halves a compact ticket file with many small
datasets (LeNet-300-100 with controls, 15 levels: 2.8 MB → 1.6 MB; docs/performance.md). Such files need HDF5
≥ 1.10 (2016) to read, which every h5py wheel bundles.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Callable, Iterable

import h5py

from ticketlab.outputs import atomic_output
from ticketlab.store.level import _create_group
from ticketlab.store.reader import TicketFile
from ticketlab.store.schema import _check_new_path, _errors, _now, _open_h5
from ticketlab.store.writer import IN_MEMORY_MAX_BYTES, LIBVER, _check_free_space

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
    with _open_h5(src, "r") as fin, atomic_output(dst) as tmp:
        if src.stat().st_size <= IN_MEMORY_MAX_BYTES:
            # built in memory and written with plain I/O, as the writer's transactions: a full disk is then one
            # OutputError from atomic_output, not HDF5 failing on close (which h5py does not survive cleanly)
            image = io.BytesIO()
            with h5py.File(image, "w", track_order=True, libver=LIBVER) as fout, _errors(src):
                _fill(fin, fout, keep, level_weights)
            with open(tmp, "wb") as out, image.getbuffer() as data:
                out.write(data)
        else:
            _check_free_space(dst, src.stat().st_size)
            with h5py.File(tmp, "w", track_order=True, libver=LIBVER) as fout, _errors(src):
                _fill(fin, fout, keep, level_weights)
    return dst


def _fill(fin: h5py.File, fout: h5py.File, keep: set[str] | None, level_weights: bool) -> None:
    def wanted(path: str) -> bool:
        """Whether the object at ``path`` is copied: run-wide checkpoints in ``keep`` (all when None), and the
        weights of levels (``levels/L/...``) and branches (``levels/L/branches/B/...``) with ``level_weights``."""
        parts = path.strip("/").split("/")
        if parts[0] == "weights" and len(parts) == 2:
            return keep is None or parts[1] in keep
        if parts[0] == "levels" and len(parts) in (3, 5) and parts[-1] in ("weights", "init_weights"):
            return level_weights
        return True

    fout.attrs.update(dict(fin.attrs))
    for name, obj in fin.items():
        _copy(obj, fout, name, wanted)
    fout.attrs["updated"] = _now()


def _copy(obj: h5py.Group | h5py.Dataset, parent: h5py.Group, name: str,
          wanted: Callable[[str], bool] = lambda path: True) -> None:
    """Copy a group (recursively, the objects ``wanted(path)`` accepts) or a dataset into ``parent`` as new objects
    of the file's format, with the same type, shape, chunks, filters (compression, shuffle, checksums) and
    attributes."""
    if isinstance(obj, h5py.Group):
        out = _create_group(parent, name)
        out.attrs.update(dict(obj.attrs))
        for key, child in obj.items():
            if wanted(child.name):
                _copy(child, out, key, wanted)
        return
    kwargs = {}
    if obj.chunks is not None:
        kwargs = dict(chunks=obj.chunks, maxshape=obj.maxshape, compression=obj.compression,
                      compression_opts=obj.compression_opts, shuffle=obj.shuffle, fletcher32=obj.fletcher32,
                      scaleoffset=obj.scaleoffset)
    data = obj[()] if obj.size else None   # reading checks the source's checksums
    if data is not None and h5py.check_vlen_dtype(obj.dtype) not in (None, str, bytes):
        # ragged arrays (model/shapes): h5py writes an object array of arrays only when given as data
        out = parent.create_dataset(name, data=data, dtype=obj.dtype, **kwargs)
    else:
        out = parent.create_dataset(name, shape=obj.shape, dtype=obj.dtype, **kwargs)
        if data is not None:
            out[()] = data
    out.attrs.update(dict(obj.attrs))
