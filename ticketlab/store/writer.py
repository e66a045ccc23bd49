"""Writing ticket files: :func:`create` a new one, append to it with :class:`TicketWriter`, or write a whole
one-level ticket at once with :func:`write_ticket`.

Crash safety: every write is a transaction built on :func:`ticketlab.outputs.atomic_output`. The file is copied
to a hidden temporary file beside it, the temporary file is changed and closed, flushed to disk, and atomically
renamed over the original. A process killed at any moment therefore leaves either the old file or the new one,
never a half-written level, and the file is never held open for writing between levels; the next writer removes
the temporary file a killed one left behind. Readers that hold the old file open keep their consistent snapshot.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import h5py
import numpy as np

from ticketlab.errors import ConfigError, TicketFileError
from ticketlab.evaluation import Evaluation
from ticketlab.masks import TensorInfo, check_masks
from ticketlab.outputs import OutputError, atomic_output
from ticketlab.store.level import LevelWriter, _create_group, _stored, _write_string, _write_weights
from ticketlab.store.reader import TicketFile
from ticketlab.store.schema import (_STR, FORMAT, SCHEMA_VERSION, STATUSES, DatasetInfo, _check_new_path,
                                    _check_writable, _level_key, _now, _to_json, _versions)

__all__ = ["create", "TicketWriter", "write_ticket"]

#: Transactions on files up to this size are made on an in-memory image of the file (see :func:`_file_image`);
#: larger files are copied on disk and changed there.
IN_MEMORY_MAX_BYTES = 512 * 2**20
#: The HDF5 object format of every file ticketlab writes (docs/format.md, "HDF5 format"): 1.10, whose chunk index
#: for a small chunked (checksummed) dataset is a few bytes instead of a 2 KiB version-1 B-tree.
LIBVER = ("v110", "latest")


@contextlib.contextmanager
def _file_image(path: Path, mode: str) -> Iterator[h5py.File]:
    """An HDF5 file in memory — new (``"w"``) or a copy of ``path`` (``"r+"``) — written to ``path`` atomically
    when the block succeeds.

    HDF5 never writes to disk here: the image's bytes are written with plain Python I/O. A disk that fills up
    (or is read-only) is then an ``OSError`` that :func:`~ticketlab.outputs.atomic_output` turns into one
    :class:`~ticketlab.outputs.OutputError`, with no temporary file left behind; HDF5 failing to write its
    metadata on close crashed the interpreter instead (a segmentation fault in h5py's object deallocation).
    """
    with atomic_output(path) as tmp:
        image = io.BytesIO()
        if mode == "r+":
            with open(path, "rb") as src:
                shutil.copyfileobj(src, image, 1 << 20)
        with h5py.File(image, mode, libver=LIBVER, **({"track_order": True} if mode == "w" else {})) as f:
            yield f
        with open(tmp, "wb") as dst, image.getbuffer() as data:
            dst.write(data)


def _check_free_space(path: Path, size: int) -> None:
    """Refuse a copy-on-disk transaction of a large file where the disk can hardly hold the copy and a level.

    Best effort (the size of the new level is not known in advance): it keeps HDF5 from meeting a full disk,
    which it does not survive cleanly."""
    need = size + size // 2 + 16 * 2**20
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        return
    if free < need:
        raise OutputError(f"cannot write {path}: not enough free space in {path.parent} ({free / 2**20:.1f} MiB "
                          f"free, a change of this {size / 2**20:.1f} MiB file needs about {need / 2**20:.1f} "
                          "MiB); the existing file is unchanged")



def create(
    path: str | os.PathLike,
    *,
    tensors: Iterable[TensorInfo],
    model: str,
    method: str,
    config: Mapping[str, Any],
    seed: int | None = None,
    dataset: DatasetInfo | None = None,
    init_weights: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Create a new ticket file with status ``"in_progress"`` and no levels.

    Parameters
    ----------
    path : path-like
        Where to write; an existing file is refused unless ``overwrite``.
    tensors : iterable of TensorInfo
        The masked tensors in model order.
    model, method : str
        Model name and a short description of how masks are made (shown by ``ticketlab info``).
    config : mapping
        The full run configuration; must be JSON-serialisable. Stored as JSON in ``/config``.
    seed : int, optional
        The run's seed (``None`` for imports whose seed is unknown).
    dataset : DatasetInfo, optional
        Dataset name, classes and test labels (needed by per-example analyses).
    init_weights : mapping, optional
        The initial weights: every parameter and buffer of the model (a state dict).
    overwrite : bool
        Replace an existing file.
    """
    path = Path(path)
    tensors = list(tensors)
    if not tensors:
        raise ConfigError("a ticket file needs at least one masked tensor")
    names = [t.name for t in tensors]
    if len(set(names)) != len(names):
        raise ConfigError(f"tensor names must be unique; got {names}")
    _check_new_path(path, overwrite)
    config_json = _to_json(dict(config), "config")
    with _file_image(path, "w") as f:
        now = _now()
        f.attrs.update({"format": FORMAT, "schema_version": SCHEMA_VERSION, "status": "in_progress",
                        "created": now, "updated": now, "model": str(model), "method": str(method),
                        "seed": -1 if seed is None else int(seed)})
        f.attrs.update(_versions())
        _write_string(f, "config", config_json)
        g = _create_group(f, "model")
        g.attrs["name"] = str(model)
        g.create_dataset("names", data=names, dtype=_STR)
        g.create_dataset("kinds", data=[t.kind for t in tensors], dtype=_STR)
        shapes = g.create_dataset("shapes", (len(tensors),), dtype=h5py.vlen_dtype(np.int64))
        for i, t in enumerate(tensors):
            shapes[i] = np.asarray(t.shape, dtype=np.int64)
        g.create_dataset("pruned", data=np.array([t.pruned for t in tensors], dtype=np.uint8))
        if dataset is not None:
            d = _create_group(f, "dataset")
            d.attrs["name"] = dataset.name
            d.attrs["num_classes"] = int(dataset.num_classes)
            if dataset.class_names:
                if len(dataset.class_names) != dataset.num_classes:
                    raise ConfigError(f"{len(dataset.class_names)} class names for {dataset.num_classes} classes")
                d.create_dataset("class_names", data=list(dataset.class_names), dtype=_STR)
            if dataset.test_labels is not None:
                labels = np.asarray(dataset.test_labels, dtype=np.int64).astype(np.int32)
                d.create_dataset("test_labels", data=labels, **_stored(labels))
        w = _create_group(f, "weights")
        if init_weights is not None:
            init = _create_group(w, "init")
            init.attrs["iteration"] = 0
            _write_weights(init, init_weights)
        _create_group(f, "levels")
    return path


class TicketWriter:
    """Adds to an existing ticket file, one atomic transaction per call (see the module docstring).

    Only one process may write a given file at a time; the file is not held open between calls.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        with TicketFile(self.path) as t:  # validates: exists, is a ticket file of a readable version
            self._tensors = t.tensors
            ds = t.dataset
        self._num_classes = ds.num_classes if ds else None
        self._n_test = None if ds is None or ds.test_labels is None else int(ds.test_labels.size)

    @property
    def tensors(self) -> list[TensorInfo]:
        return list(self._tensors)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[h5py.File]:
        """Copy the file, yield the copy open for writing, then atomically replace the original with it.

        If the block raises (or the process dies), the original file is untouched. The file's one-writer lock
        (:func:`ticketlab.outputs.output_lock`) is held for the transaction: a file another process is writing
        is refused. Files up to :data:`IN_MEMORY_MAX_BYTES` are changed in memory and written with plain I/O
        (a full disk is then a clean error); larger ones are copied and changed on disk, after a check that
        the disk has room for the copy.
        """
        size = self.path.stat().st_size if self.path.exists() else 0
        if size <= IN_MEMORY_MAX_BYTES:
            with _file_image(self.path, "r+") as f:
                _check_writable(f, self.path)
                yield f
                f.attrs["updated"] = _now()
            return
        _check_free_space(self.path, size)
        with atomic_output(self.path, copy_existing=True) as tmp, h5py.File(tmp, "r+", libver=LIBVER) as f:
            _check_writable(f, self.path)
            yield f
            f.attrs["updated"] = _now()

    def _level_group(self, f: h5py.File, level: int, branch: str | None, overwrite: bool) -> h5py.Group:
        levels = f["levels"]
        key = _level_key(level)
        if branch is None:
            if int(level) < 0:
                raise ConfigError(f"level must be >= 0; got {level}")
            if key in levels:
                if not overwrite:
                    raise TicketFileError(f"{self.path}: level {level} already exists")
                del levels[key]
            g = _create_group(levels, key)
            g.attrs["level"] = int(level)
            return g
        if key not in levels:
            raise TicketFileError(f"{self.path}: no level {level} to add branch {branch!r} to; write the level first")
        if not branch or "/" in branch:
            raise ConfigError(f"branch name must be non-empty without '/'; got {branch!r}")
        branches = levels[key].require_group("branches")
        if branch in branches:
            if not overwrite:
                raise TicketFileError(f"{self.path}: level {level} already has a branch {branch!r}")
            del branches[branch]
        return _create_group(branches, branch)

    @contextlib.contextmanager
    def level_writer(self, level: int, *, branch: str | None = None, attrs: Mapping[str, Any] | None = None,
                     overwrite: bool = False) -> Iterator[LevelWriter]:
        """Write level ``level`` (or a branch of it) one tensor at a time, in one atomic transaction.

        ::

            with writer.level_writer(3, attrs={"rate": 0.2}) as lw:
                for name, mask in ...:            # any order
                    lw.add_mask(name, mask)       # or packed=..., kept=...
                lw.set_evaluation(ev)

        The level is committed when the block ends, and only if every tensor got a mask; on an error the file is
        left as it was.
        """
        with self.transaction() as f:
            g = self._level_group(f, level, branch, overwrite)
            g.attrs["created"] = _now()
            for k, v in (attrs or {}).items():
                g.attrs[k] = v
            lw = LevelWriter(g, f, self._tensors, self._num_classes, self._n_test)
            yield lw
            lw._finish()

    def write_level(
        self,
        level: int,
        masks: Mapping[str, Any],
        *,
        evaluation: Evaluation | None = None,
        weights: Mapping[str, Any] | None = None,
        attrs: Mapping[str, Any] | None = None,
        overwrite: bool = False,
    ) -> None:
        """Write one complete level atomically.

        Parameters
        ----------
        level : int
            0 for the dense network, L after L pruning steps.
        masks : mapping of str to array
            A mask for every tensor of the file's tensor table (0/1 or bool arrays of the tensor's shape).
        evaluation : Evaluation, optional
            The trained network's test-set evaluation.
        weights : mapping, optional
            The trained weights (a state dict). Masked tensors are stored as their kept values only.
        attrs : mapping, optional
            Extra scalar attributes for the level group (e.g. ``{"rate": 0.2}``).
        overwrite : bool
            Replace the level if it exists.
        """
        self._write(level, None, check_masks(masks, self._tensors), evaluation, weights, None, attrs, overwrite)

    def write_branch(
        self,
        level: int,
        name: str,
        masks: Mapping[str, Any],
        *,
        kind: str,
        evaluation: Evaluation | None = None,
        init_weights: Mapping[str, Any] | None = None,
        weights: Mapping[str, Any] | None = None,
        seed: int | None = None,
        description: str = "",
        attrs: Mapping[str, Any] | None = None,
        overwrite: bool = False,
    ) -> None:
        """Write a control branch of ``level`` atomically: its own mask, initial weights and evaluation.

        ``kind`` names the control (e.g. ``"reinit"``, ``"shuffle"``, ``"random"``).
        """
        attrs = {"kind": str(kind), "seed": -1 if seed is None else int(seed), "description": str(description),
                 **(attrs or {})}
        self._write(level, name, check_masks(masks, self._tensors), evaluation, weights, init_weights, attrs,
                    overwrite)

    def _write(self, level: int, branch: str | None, masks: dict[str, np.ndarray], evaluation: Evaluation | None,
               weights: Mapping[str, Any] | None, init_weights: Mapping[str, Any] | None,
               attrs: Mapping[str, Any] | None, overwrite: bool) -> None:
        with self.level_writer(level, branch=branch, attrs=attrs, overwrite=overwrite) as lw:
            for name, m in masks.items():
                lw.add_mask(name, m)
            if weights is not None:
                lw.add_weights(weights, masks)
            if init_weights is not None:
                lw.add_init_weights(init_weights, masks)
            if evaluation is not None:
                lw.set_evaluation(evaluation)

    def write_checkpoint(self, point: str, weights: Mapping[str, Any], *, iteration: int | None = None,
                         overwrite: bool = False) -> None:
        """Write a run-wide weight checkpoint, e.g. ``"rewind"`` (the weights at iteration K) or ``"init"``."""
        if point not in ("init", "rewind"):
            raise ConfigError(f"checkpoint must be 'init' or 'rewind'; got {point!r}")
        with self.transaction() as f:
            w = f.require_group("weights")
            if point in w:
                if not overwrite:
                    raise TicketFileError(f"{self.path}: already has {point!r} weights")
                del w[point]
            g = _create_group(w, point)
            g.attrs["iteration"] = -1 if iteration is None else int(iteration)
            _write_weights(g, weights)

    def write_config(self, config: Mapping[str, Any]) -> None:
        """Replace the run configuration (``/config``), e.g. when a resumed run is extended by more levels."""
        text = _to_json(dict(config), "config")
        with self.transaction() as f:
            del f["config"]
            _write_string(f, "config", text)

    def write_state(self, name: str, state: Mapping[str, Any]) -> None:
        """Store (replacing) a JSON document under ``/state/<name>``, e.g. what a resumed run needs."""
        text = _to_json(dict(state), f"state {name!r}")
        with self.transaction() as f:
            s = f.require_group("state")
            if name in s:
                del s[name]
            _write_string(s, name, text)

    def set_status(self, status: str) -> None:
        """Mark the run ``"in_progress"``, ``"complete"`` or ``"failed"``."""
        if status not in STATUSES:
            raise ConfigError(f"status must be one of {', '.join(STATUSES)}; got {status!r}")
        with self.transaction() as f:
            f.attrs["status"] = status



def write_ticket(
    path: str | os.PathLike,
    masks: Mapping[str, Any],
    *,
    tensors: Iterable[TensorInfo],
    model: str,
    method: str,
    config: Mapping[str, Any],
    seed: int | None = None,
    dataset: DatasetInfo | None = None,
    init_weights: Mapping[str, Any] | None = None,
    attrs: Mapping[str, Any] | None = None,
    status: str = "complete",
    overwrite: bool = False,
) -> Path:
    """Write a whole ticket file at once: level 0 holds ``masks``, the run is marked ``status``.

    The file appears at ``path`` only when complete (one :func:`~ticketlab.outputs.atomic_output` around
    :func:`create`, :meth:`TicketWriter.write_level` and :meth:`TicketWriter.set_status`); on any error nothing is
    left behind. The other parameters are those of :func:`create`; ``attrs`` go to the level group.
    """
    path = Path(path)
    _check_new_path(path, overwrite)
    with atomic_output(path) as tmp:
        create(tmp, tensors=tensors, model=model, method=method, config=config, seed=seed, dataset=dataset,
               init_weights=init_weights, overwrite=True)
        writer = TicketWriter(tmp)
        writer.write_level(0, masks, attrs=attrs)
        writer.set_status(status)
    return path
