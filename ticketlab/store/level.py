"""Writing the inside of a ticket file: one level's (or branch's) masks, weights and evaluation.

:class:`LevelWriter` receives a level one tensor at a time inside a :class:`~ticketlab.store.TicketWriter`
transaction; the ``_write_*`` helpers lay out weights (kept values only where a mask applies) and evaluations as
``docs/format.md`` describes. Nothing here opens or commits a file.
"""

from __future__ import annotations

import zlib
from typing import Any, Mapping

import h5py
import numpy as np

from ticketlab.errors import ConfigError
from ticketlab.evaluation import Evaluation
from ticketlab.masks import TensorInfo, as_bool_mask, density, pack_mask
from ticketlab.store.schema import _GZIP_LEVEL, _MASK_CHUNK_BYTES, _STR

__all__ = ["LevelWriter"]


def _create_group(parent: h5py.Group, name: str) -> h5py.Group:
    return parent.create_group(name, track_order=True)


def _write_string(parent: h5py.Group, name: str, text: str) -> None:
    parent.create_dataset(name, data=text, dtype=_STR)


def _gzip(n: int) -> dict[str, Any]:
    """Dataset options: gzip for arrays big enough to gain from it (HDF5 needs chunks for filters)."""
    return {"compression": "gzip", "compression_opts": _GZIP_LEVEL} if n >= 1024 else {}


def _stored(arr: np.ndarray) -> dict[str, Any]:
    """Dataset options for data: HDF5's ``fletcher32`` checksum on every non-scalar, non-empty array, so that a
    flipped byte is an error on read instead of a number, and gzip where it gains (:func:`_gzip`). Scalars
    cannot carry filters in HDF5."""
    if not arr.ndim or not arr.size:
        return {}
    return {**_gzip(arr.size), "fletcher32": True}


def _as_array(name: str, value: Any) -> tuple[np.ndarray, str | None]:
    """Convert a numpy array or torch tensor to numpy; returns (array, original torch dtype or None).

    bfloat16 has no numpy equivalent: it is stored as float32 (exactly representable) and the original dtype is
    recorded so it can be restored.
    """
    torch_dtype = None
    if hasattr(value, "detach") and hasattr(value, "dtype"):  # a torch tensor, without importing torch here
        torch_dtype = str(value.dtype).replace("torch.", "")
        value = value.detach().cpu()
        if torch_dtype == "bfloat16":
            value = value.float()
        value = value.numpy()
    arr = np.asarray(value)
    if arr.dtype == object:
        raise ConfigError(f"weight {name!r} is not a numeric array")
    return arr, torch_dtype


def _write_weights(group: h5py.Group, weights: Mapping[str, Any], masks: Mapping[str, np.ndarray] | None = None
                   ) -> None:
    """Write a state dict. Tensors with a mask in ``masks`` are stored as their kept values only."""
    for name, value in weights.items():
        if "/" in name:
            raise ConfigError(f"weight name {name!r} contains '/', which HDF5 would read as a sub-group")
        arr, torch_dtype = _as_array(name, value)
        m = None if masks is None else masks.get(name)
        if m is not None and arr.shape == m.shape and arr.size:
            values = arr[m]
            d = group.create_dataset(name, data=values, **_stored(values))
            d.attrs["layout"] = "kept_values"
            d.attrs["shape"] = np.asarray(arr.shape, dtype=np.int64)
        else:
            d = group.create_dataset(name, data=arr, **_stored(arr))
        if torch_dtype is not None:
            d.attrs["torch_dtype"] = torch_dtype


def _chunk_length(n: int) -> int:
    """Chunks of at most 256 KiB of equal length: HDF5 stores an uncompressed edge chunk in full, so a mask of
    288 KiB in 256 KiB chunks would take 512 KiB, but in two chunks of 144 KiB takes 288 KiB."""
    chunks = -(-n // _MASK_CHUNK_BYTES)
    return -(-n // chunks)


def _compressible(packed: np.ndarray) -> bool:
    """Whether gzip shrinks a packed mask, judged by a fast trial on its first chunk.

    Masks near density 0.5 with no structure are incompressible, and gzip would add a few bytes per chunk;
    those are stored raw, so storage never exceeds 1 bit per weight (plus HDF5's per-dataset header).
    """
    if packed.size < 64:
        return False
    sample = packed[:_MASK_CHUNK_BYTES].tobytes()
    return len(zlib.compress(sample, 1)) < 0.97 * len(sample)


class LevelWriter:
    """Receives one level's (or branch's) masks, weights and evaluation, one tensor at a time.

    Obtained from :meth:`TicketWriter.level_writer`; everything given is written in that call's transaction,
    which commits when the ``with`` block ends and every tensor of the table has exactly one mask. Only one
    tensor needs to be in memory at a time, so levels of models far larger than memory can be written (e.g. by
    ``ticketlab import checkpoint``).
    """

    def __init__(self, group: h5py.Group, root: h5py.File, tensors: list[TensorInfo], num_classes: int | None,
                 n_test: int | None) -> None:
        self._group, self._root, self._tensors = group, root, tensors
        self._index = {t.name: i for i, t in enumerate(tensors)}
        self._masks = _create_group(group, "masks")
        self._weights: h5py.Group | None = None
        self._kept = np.full(len(tensors), -1, dtype=np.int64)
        self._num_classes, self._n_test = num_classes, n_test

    def add_mask(self, name: str, mask: Any = None, *, packed: np.ndarray | None = None,
                 kept: int | None = None) -> None:
        """Add tensor ``name``'s mask: a 0/1 or boolean array of its shape, or ``packed`` as :func:`pack_mask`
        makes it (``ceil(size / 8)`` bytes, padding bits 0). ``kept`` is counted when not given."""
        i = self._index.get(name)
        if i is None:
            raise ConfigError(f"mask names a tensor the file's table does not have: {name!r}")
        if self._kept[i] >= 0:
            raise ConfigError(f"two masks given for tensor {name!r}")
        t = self._tensors[i]
        if (mask is None) == (packed is None):
            raise ConfigError(f"give the mask of {name!r} either as an array or packed, not both or neither")
        if mask is not None:
            mask = as_bool_mask(name, mask, t.shape)
            packed = pack_mask(mask)
            kept = int(np.count_nonzero(mask)) if kept is None else kept
        packed = np.ascontiguousarray(packed, dtype=np.uint8).reshape(-1)
        if packed.size != (t.size + 7) // 8:
            raise ConfigError(f"packed mask for {name!r} has {packed.size} bytes, expected {(t.size + 7) // 8}")
        if kept is None:
            kept = int(np.unpackbits(packed, count=t.size).sum()) if t.size else 0
        if not 0 <= int(kept) <= t.size:
            raise ConfigError(f"kept count {kept} of {name!r} is outside [0, {t.size}]")
        kw: dict[str, Any] = {}
        if packed.size:  # a 4-byte checksum per chunk of at most 256 KiB: 0.0015 % of the mask
            kw = dict(chunks=(_chunk_length(packed.size),), fletcher32=True)
        if _compressible(packed):
            kw.update(compression="gzip", compression_opts=_GZIP_LEVEL)
        d = self._masks.create_dataset(name, data=packed, **kw)
        d.attrs["shape"] = np.asarray(t.shape, dtype=np.int64)
        self._kept[i] = int(kept)

    def add_weight(self, key: str, value: Any, *, mask: np.ndarray | None = None,
                   torch_dtype: str | None = None) -> None:
        """Add one trained weight (numpy array or torch tensor). With ``mask`` (boolean, the tensor's mask) only
        its kept values are stored (``layout="kept_values"``). ``torch_dtype`` records the dtype the values had
        before conversion to numpy (e.g. ``"bfloat16"``; torch tensors record theirs themselves)."""
        if self._weights is None:
            self._weights = _create_group(self._group, "weights")
        _write_weights(self._weights, {key: value}, None if mask is None else {key: mask})
        if torch_dtype is not None:
            self._weights[key].attrs["torch_dtype"] = str(torch_dtype)

    def add_weights(self, weights: Mapping[str, Any], masks: Mapping[str, np.ndarray] | None = None) -> None:
        """Add a state dict; tensors with a mask in ``masks`` are stored as their kept values."""
        for key, value in weights.items():
            self.add_weight(key, value, mask=None if masks is None else masks.get(key))

    def add_init_weights(self, weights: Mapping[str, Any], masks: Mapping[str, np.ndarray] | None = None) -> None:
        """A branch's initial weights (``init_weights/``), masked tensors as kept values."""
        _write_weights(_create_group(self._group, "init_weights"), weights, masks)

    def set_evaluation(self, evaluation: Evaluation) -> None:
        """The trained network's test-set evaluation."""
        _write_evaluation(self._group, evaluation, self._num_classes, self._n_test)

    def set_logged_metrics(self, *, accuracy: float, loss: float = float("nan"),
                           curve: Mapping[str, np.ndarray] | None = None, early_stop_iteration: int | None = None,
                           iterations: int = 0, wall_time: float = 0.0) -> None:
        """Test metrics known only as logged numbers (e.g. an imported OpenLTH run): accuracy (fraction), loss
        (nats) and curve, without predictions. :meth:`TicketFile.evaluation` returns ``None`` for such a level;
        summaries and ``ticketlab info`` show the numbers."""
        _write_eval_group(self._group, accuracy, loss, early_stop_iteration, iterations, wall_time, curve or {})

    def set_pruned(self, flags: Mapping[str, bool]) -> None:
        """Update the ``pruned`` flags of the file's tensor table (e.g. when an importer learns them while
        streaming), in this transaction."""
        unknown = [n for n in flags if n not in self._index]
        if unknown:
            raise ConfigError(f"no tensor {unknown[0]!r} in the file's table")
        pruned = self._root["model"]["pruned"]
        values = pruned[()]
        for name, flag in flags.items():
            values[self._index[name]] = 1 if flag else 0
        pruned[...] = values

    def _finish(self) -> None:
        missing = [t.name for t, k in zip(self._tensors, self._kept) if k < 0]
        if missing:
            raise ConfigError(f"no mask given for tensor {missing[0]!r} (missing: {', '.join(missing[:5])}"
                              + (", ..." if len(missing) > 5 else "") + ")")
        self._group.create_dataset("kept", data=self._kept, **_stored(self._kept))
        size = sum(t.size for t in self._tensors)
        kept = int(self._kept.sum())
        self._group.attrs.update({"kept": kept, "size": int(size), "density": density(kept, size)})


def _write_eval_group(group: h5py.Group, accuracy: float, loss: float, early_stop_iteration: int | None,
                      iterations: int, wall_time: float, curve: Mapping[str, np.ndarray]) -> h5py.Group:
    """The ``eval`` group's headline attributes and training curve (shared by full and logged evaluations)."""
    e = _create_group(group, "eval")
    e.attrs["accuracy"] = float(accuracy)
    e.attrs["loss"] = float(loss)
    e.attrs["early_stop_iteration"] = -1 if early_stop_iteration is None else int(early_stop_iteration)
    e.attrs["iterations"] = int(iterations)
    e.attrs["wall_time"] = float(wall_time)
    c = _create_group(e, "curve")
    lengths = {np.asarray(v).shape for v in curve.values()}
    if len(lengths) > 1 or any(len(x) != 1 for x in lengths):
        raise ConfigError(f"training-curve columns must be 1-D of equal length; got {sorted(lengths)}")
    for name, column in curve.items():
        column = np.asarray(column)
        c.create_dataset(str(name), data=column, **_stored(column))
    return e


def _write_evaluation(group: h5py.Group, ev: Evaluation, num_classes: int | None, n_test: int | None) -> None:
    if num_classes is not None and ev.num_classes != num_classes:
        raise ConfigError(f"evaluation has {ev.num_classes} classes but the file's dataset has {num_classes}")
    if n_test is not None and ev.predictions.size != n_test:
        raise ConfigError(f"evaluation has {ev.predictions.size} predictions but the test set has {n_test} examples")
    e = _write_eval_group(group, ev.accuracy, ev.loss, ev.early_stop_iteration, ev.iterations, ev.wall_time,
                          ev.curve)
    pca = ev.per_class_accuracy.astype(np.float64)
    e.create_dataset("per_class_accuracy", data=pca, **_stored(pca))
    e.create_dataset("confusion", data=ev.confusion, **_stored(ev.confusion))
    pred_dtype = np.int16 if ev.num_classes <= np.iinfo(np.int16).max else np.int32
    preds = ev.predictions.astype(pred_dtype)
    e.create_dataset("predictions", data=preds, **_stored(preds))
