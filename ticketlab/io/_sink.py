"""TEMPORARY ADAPTER: write one level of a ticket file one tensor at a time.

``store.TicketWriter.write_level`` takes every mask of a level at once as boolean arrays (1 byte per weight: 7 GB
for a 7B-parameter model), so an importer of large checkpoints cannot use it. Until the store offers a streaming
writer, :func:`level_sink` provides one with the semantics proposed to the lead (see ``docs``/the report):

    with level_sink(writer, level, attrs={...}) as sink:
        for name, packed, kept in ...:          # any order; one tensor in memory at a time
            sink.add_mask(name, packed=packed, kept=kept)
            sink.add_weight(name, values, mask=bool_mask)   # optional: kept values only
        sink.set_pruned({name: True, ...})      # update the tensor table's `pruned` flags in the same transaction

It runs inside ``TicketWriter.transaction()`` (public: copy, write, fsync, atomic rename), so a failure leaves the
file as it was. It reaches into the store's private helpers to write exactly the layout of ``docs/format.md``
(bit-packed masks, gzip where it helps, ``kept`` counts, level attributes). **Replace this module by the store's
API** — ``TicketWriter.level_writer(level, *, branch=None, attrs=None, overwrite=False)`` yielding an object with
``add_mask(name, mask=None, *, packed=None, kept=None)``, ``add_weight(key, value, *, mask=None)`` and a
``TicketWriter.set_pruned(flags)`` — once it exists; :func:`level_sink` is the only place to change.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Mapping

import numpy as np

from ticketlab import store
from ticketlab.errors import ConfigError, TicketFileError


class LevelSink:
    """Receives one level's masks (bit-packed) and weights one tensor at a time; see the module docstring."""

    def __init__(self, writer: store.TicketWriter, group: Any, root: Any) -> None:
        self._tensors = writer.tensors
        self._index = {t.name: i for i, t in enumerate(self._tensors)}
        self._group = group
        self._root = root
        self._masks = store._create_group(group, "masks")
        self._weights = None
        self._kept = np.full(len(self._tensors), -1, dtype=np.int64)
        self._path = writer.path

    def add_mask(self, name: str, *, packed: np.ndarray, kept: int) -> None:
        """Add tensor ``name``'s mask, bit-packed as :func:`ticketlab.store.pack_mask` does, with its kept count."""
        i = self._index.get(name)
        if i is None:
            raise ConfigError(f"mask names a tensor the file's table does not have: {name!r}")
        if self._kept[i] >= 0:
            raise ConfigError(f"two masks given for tensor {name!r}")
        t = self._tensors[i]
        packed = np.ascontiguousarray(packed, dtype=np.uint8).reshape(-1)
        if packed.size != (t.size + 7) // 8:
            raise ConfigError(f"packed mask for {name!r} has {packed.size} bytes, expected {(t.size + 7) // 8}")
        if not 0 <= int(kept) <= t.size:
            raise ConfigError(f"kept count {kept} of {name!r} is outside [0, {t.size}]")
        kw: dict[str, Any] = {}
        if store._compressible(packed):
            kw = dict(chunks=(min(packed.size, store._MASK_CHUNK_BYTES),), compression="gzip",
                      compression_opts=store._GZIP_LEVEL)
        d = self._masks.create_dataset(name, data=packed, **kw)
        d.attrs["shape"] = np.asarray(t.shape, dtype=np.int64)
        self._kept[i] = int(kept)

    def add_weight(self, key: str, value: Any, *, mask: np.ndarray | None = None, torch_dtype: str | None = None
                   ) -> None:
        """Add one trained weight (numpy array or torch tensor); with ``mask``, only its kept values are stored."""
        if self._weights is None:
            self._weights = store._create_group(self._group, "weights")
        store._write_weights(self._weights, {key: value}, None if mask is None else {key: mask})
        if torch_dtype is not None:
            self._weights[key].attrs["torch_dtype"] = torch_dtype

    def set_pruned(self, flags: Mapping[str, bool]) -> None:
        """Set the ``pruned`` flag of tensors of the file's table (written with this level's transaction)."""
        pruned = self._root["model"]["pruned"]
        values = pruned[()]
        for name, flag in flags.items():
            values[self._index[name]] = 1 if flag else 0
        pruned[...] = values

    def _finish(self) -> None:
        missing = [t.name for t, k in zip(self._tensors, self._kept) if k < 0]
        if missing:
            raise ConfigError(f"no mask given for tensor {missing[0]!r} (missing: {len(missing)} tensors)")
        self._group.create_dataset("kept", data=self._kept)
        size = sum(t.size for t in self._tensors)
        kept = int(self._kept.sum())
        self._group.attrs["kept"] = kept
        self._group.attrs["size"] = int(size)
        self._group.attrs["density"] = store.density(kept, size)


@contextlib.contextmanager
def level_sink(writer: store.TicketWriter, level: int, *, attrs: Mapping[str, Any] | None = None,
               overwrite: bool = False) -> Iterator[LevelSink]:
    """Write level ``level`` of ``writer``'s file one tensor at a time, atomically (module docstring)."""
    with writer.transaction() as f:
        try:
            group = writer._level_group(f, level, None, overwrite)
        except KeyError as err:  # pragma: no cover - a damaged file
            raise TicketFileError(f"{writer.path}: cannot add level {level} ({err})") from None
        group.attrs["created"] = store._now()
        for k, v in (attrs or {}).items():
            group.attrs[k] = v
        sink = LevelSink(writer, group, f)
        yield sink
        sink._finish()
