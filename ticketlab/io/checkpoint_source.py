"""What ``import checkpoint`` reads: one dense checkpoint — a PyTorch file, a ``.safetensors`` file, or a
(sharded) Hugging Face directory — opened tensor by tensor (:class:`Checkpoint`), and the blocks its tensors are
read in (:func:`iter_chunks`).

A sharded directory has ``model.safetensors.index.json`` (or ``pytorch_model.bin.index.json``) whose
``weight_map`` names the shard of every tensor (:func:`read_index` validates it: size, nesting, duplicate keys,
shard names); every shard must lie inside the directory (symbolic links are resolved first) and exist. A
directory without an index holds one ``model.safetensors`` or ``pytorch_model.bin``. The files themselves are
read by :mod:`ticketlab.io.tensorfiles`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator

from ticketlab.errors import TicketFileError
from ticketlab.io.safe_json import UntrustedJSONError, load_json, short_repr
from ticketlab.io.tensorfiles import (SafetensorsFile, TensorRef, load_torch, state_dict_of, torch_ref,
                                      unusable_tensor)

__all__ = ["Checkpoint", "read_index", "iter_chunks", "blocks_hold_whole_slices", "INDEX_FILES", "SINGLE_FILES",
           "MAX_INDEX_BYTES"]

#: Largest sharded-checkpoint index read (real ones are well under 1 MiB).
MAX_INDEX_BYTES = 64 * 1024 * 1024
INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
SINGLE_FILES = ("model.safetensors", "pytorch_model.bin")


def read_index(index: Path) -> dict[str, str]:
    """The ``weight_map`` (tensor name → shard file name) of a sharded-checkpoint index, validated: at most
    :data:`MAX_INDEX_BYTES`, JSON nested at most 16 deep without repeated keys, shard names non-empty strings
    without NUL characters. Where the shards are is checked by :class:`Checkpoint`."""

    def bad(why: str) -> TicketFileError:
        return TicketFileError(f"{index}: not a valid sharded-checkpoint index ({why})")

    try:
        with open(index, "rb") as f:
            data = f.read(MAX_INDEX_BYTES + 1)
    except OSError as err:
        raise bad(f"cannot read it: {err.strerror or err}") from None
    if len(data) > MAX_INDEX_BYTES:
        raise bad(f"larger than {MAX_INDEX_BYTES} bytes")
    try:
        doc = load_json(data, max_depth=16)
    except UntrustedJSONError as err:
        raise bad(str(err)) from None
    weight_map = doc.get("weight_map") if isinstance(doc, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise bad("no 'weight_map' object naming the shard of each tensor")
    for name, shard in weight_map.items():
        if not isinstance(shard, str) or not shard or "\0" in shard:
            raise bad(f"the shard of {short_repr(name)} is {short_repr(shard)}, not a file name")
    return weight_map


class Checkpoint:
    """A dense checkpoint opened tensor by tensor: a PyTorch state dict file, a ``.safetensors`` file, or a
    (sharded) Hugging Face directory. :attr:`tensors` maps names to :class:`TensorRef`; :attr:`notes` says what
    was skipped. Close it (or use ``with``) to release file handles."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.tensors: dict[str, TensorRef] = {}
        self.notes: list[str] = []
        self._files: list[SafetensorsFile] = []
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:
        p = self.path
        if not p.exists():
            raise TicketFileError(f"{p}: no such file or directory")
        if p.is_dir():
            index = next((p / n for n in INDEX_FILES if (p / n).is_file()), None)
            if index is not None:
                self._open_index(index)
                return
            single = [p / n for n in SINGLE_FILES if (p / n).is_file()]
            if not single:
                raise TicketFileError(
                    f"{p}: a directory without {' or '.join(INDEX_FILES)} or {' / '.join(SINGLE_FILES)}; pass the "
                    "checkpoint file itself, or the directory of a Hugging Face model")
            self._open_file(single[0])
            return
        self._open_file(p)

    def _open_file(self, path: Path, names: Iterable[str] | None = None) -> None:
        if path.suffix == ".safetensors":
            st = SafetensorsFile(path)
            self._files.append(st)
            for name, dt in st.skipped.items():
                self.notes.append(f"{path}: skipped {short_repr(name)} of dtype {dt}, which this reader does not know")
            refs = st.tensors
        else:
            sd, notes = state_dict_of(load_torch(path, what="checkpoint"), path)
            self.notes += notes
            refs = {}
            for k, v in sd.items():
                why = unusable_tensor(v)
                if why:
                    self.notes.append(f"{path}: skipped {short_repr(k)}: {why}")
                else:
                    refs[k] = torch_ref(k, v, str(path))
        if names is None:
            self.tensors.update(refs)
            return
        for name in names:
            if name not in refs:
                raise TicketFileError(f"{path}: the index names tensor {short_repr(name)} in this shard, but the shard "
                                      "lacks it")
            self.tensors[name] = refs[name]

    def _open_index(self, index: Path) -> None:
        shards: dict[str, list[str]] = {}
        for name, shard in read_index(index).items():
            shards.setdefault(shard, []).append(name)
        root = index.parent.resolve()
        for shard, names in shards.items():
            shard_path = index.parent / shard
            if not shard_path.resolve().is_relative_to(root):
                raise TicketFileError(f"{index}: shard path {short_repr(shard)} leaves the directory")
            if not shard_path.is_file():
                raise TicketFileError(f"{index}: names shard {short_repr(shard)}, which is missing from "
                                      f"{index.parent}")
            self._open_file(shard_path, names)

    def close(self) -> None:
        for f in self._files:
            f.close()
        self._files = []

    def __enter__(self) -> "Checkpoint":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def iter_chunks(ref: TensorRef, max_elements: int, align_rows: int = 16) -> Iterator[tuple[int, int]]:
    """Flat ``[start, stop)`` ranges covering ``ref`` in blocks of about ``max_elements``.

    Normally a block holds whole leading-dimension slices, a multiple of ``align_rows`` of them (except the last
    block), so that groups of up to ``align_rows`` consecutive slices or elements never straddle two blocks and
    every block but the last holds a multiple of 8 elements (bit packing stays aligned). When ``align_rows``
    slices would exceed ``4 * max_elements`` (e.g. shape ``(1, 10**9)``), blocks split slices instead, at
    multiples of ``align_rows`` elements; see :func:`blocks_hold_whole_slices`."""
    size = ref.size
    if size == 0:
        return
    row = size // ref.shape[0] if ref.shape and ref.shape[0] else size
    if not blocks_hold_whole_slices(ref, max_elements, align_rows):  # huge slices: split inside them, at
        step = max(align_rows, max_elements // align_rows * align_rows)  # multiples of align_rows elements
    else:
        step = max(align_rows, (max_elements // row) // align_rows * align_rows) * row
    for start in range(0, size, step):
        yield start, min(size, start + step)


def blocks_hold_whole_slices(ref: TensorRef, max_elements: int, align_rows: int = 16) -> bool:
    """Whether :func:`iter_chunks` gives blocks of whole leading-dimension slices for ``ref``."""
    row = ref.size // ref.shape[0] if ref.shape and ref.shape[0] else ref.size
    return row * align_rows <= max(4 * max_elements, align_rows)
