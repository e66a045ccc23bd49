"""Import dense checkpoints whose pruned weights are exact zeros (Wanda, SparseGPT, magnitude pruning, ...).

The mask of a tensor is ``weight != 0`` (−0.0 counts as zero). Every floating-point tensor with at least two
dimensions is a masked tensor of the ticket (Linear and Conv weights, embeddings, the output layer); 1-D
tensors (biases, norms) and integer tensors are not.

**Pruned or dense?** A dense network has a few exact zeros by chance (bfloat16 has only 8 bits of mantissa, so
small weights round to 0). A tensor counts as *pruned* at a level when

- its exact-zero fraction exceeds ``zero_threshold`` (default 1 %), or
- it has an N:M pattern (below).

Its mask is then ``weight != 0``. Otherwise it is dense: its mask is all ones (as for every tensor left
unpruned, following OpenLTH's convention) and its chance zeros are only reported. ``zero_threshold=0`` makes
every zero a pruned weight.

**N:M patterns** (at most N nonzeros in every group of M consecutive weights, e.g. 2:4 for NVIDIA sparse tensor
cores) are looked for along the last dimension (the input dimension of ``nn.Linear``, as Wanda and SparseGPT
group them), along dim 1 (input channels) of convolution weights, and along dim 0 of 2-D weights (transposed
layouts such as GPT-2's ``Conv1D``), for M = 4 and 8. A pattern N:M is reported when every group keeps at most
N ≤ M/2 weights **and** at least 90 % of the groups keep exactly N; the second condition keeps a highly sparse
unstructured mask, whose groups also rarely hold more than N, from passing for N:M. The smallest M that fits
is reported.

**Streaming.** Tensors are read one at a time, in blocks of about 8 Mi weights; a block becomes a bit-packed
mask piece at once, so memory holds the packed masks of one tensor (1 bit per weight) plus one block, whatever
the size of the checkpoint. Levels are written one tensor at a time through ``TicketWriter.level_writer``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ticketlab import store
from ticketlab.errors import ConfigError, TicketFileError
from ticketlab.io.checkpoint_source import Checkpoint, blocks_hold_whole_slices, iter_chunks
from ticketlab.io.common import ImportResult, check_output, natural_key, tensor_kind
from ticketlab.io.names import canonical_key
from ticketlab.io.safe_json import short_repr
from ticketlab.io.tensorfiles import TensorRef, nonzero
from ticketlab.masks import TensorInfo, density, pack_mask, unpack_mask
from ticketlab.outputs import atomic_output

#: A tensor whose exact-zero fraction exceeds this (and that has no N:M pattern) counts as pruned.
DEFAULT_ZERO_THRESHOLD = 0.01
#: Group sizes M searched for N:M patterns.
NM_GROUP_SIZES = (4, 8)
#: Fraction of groups that must keep exactly N weights for an N:M pattern to be reported.
NM_EXACT_FRACTION = 0.9
#: Weights per block read from disk.
CHUNK_ELEMENTS = 1 << 23


@dataclass
class TensorScan:
    """What scanning one tensor found.

    Attributes
    ----------
    name : str
        Canonical name.
    shape : tuple of int
    dtype : str
        torch dtype name.
    zeros : int
        Exact zeros (−0.0 included).
    pattern : str or None
        ``"N:M"`` when an N:M pattern holds (module docstring), else ``None``.
    pattern_dim : int or None
        The dimension the groups run along: −1 (last), 1 (conv input channels) or 0.
    packed : ndarray of uint8
        The mask ``weight != 0``, bit-packed as :func:`ticketlab.masks.pack_mask` does.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    zeros: int
    pattern: str | None
    pattern_dim: int | None
    packed: np.ndarray = field(repr=False)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def zero_fraction(self) -> float:
        return self.zeros / self.size if self.size else 0.0

    def pruned(self, zero_threshold: float = DEFAULT_ZERO_THRESHOLD) -> bool:
        """Whether the tensor counts as pruned: zero fraction above the threshold, or an N:M pattern."""
        return self.zero_fraction > zero_threshold or self.pattern is not None

    def describe_pattern(self) -> str | None:
        return None if self.pattern is None else f"{self.pattern} along dim {self.pattern_dim}"


class _NMSearch:
    """Accumulates, block by block, histograms of kept weights per group of M along candidate dimensions."""

    def __init__(self, shape: tuple[int, ...], whole_slices: bool = True) -> None:
        self.shape = shape
        dims = [-1]
        if whole_slices:  # groups across slices need blocks of whole slices
            dims += [1] if len(shape) >= 3 else [0] if len(shape) == 2 else []
        self.hist: dict[tuple[int, int], np.ndarray] = {
            (d, m): np.zeros(m + 1, dtype=np.int64)
            for d in dims for m in NM_GROUP_SIZES if shape and shape[d] % m == 0 and shape[d] >= m
        }

    def update(self, mask: np.ndarray) -> None:
        if not self.hist:
            return
        row = math.prod(self.shape[1:])  # weights per slice of the leading dimension
        rows = mask.size // row
        for dim in {d for d, _ in self.hist}:
            if dim == -1:
                groups = mask  # blocks start at multiples of 16 weights, so at group boundaries
            elif dim == 1:
                groups = mask.reshape(rows, self.shape[1], -1).transpose(0, 2, 1)
            else:  # dim 0 of a 2-D tensor: blocks hold whole groups of rows
                groups = mask.reshape(rows, -1).T
            groups = np.ascontiguousarray(groups).view(np.uint8).reshape(-1)
            for m in NM_GROUP_SIZES:
                h = self.hist.get((dim, m))
                if h is None:
                    continue
                word = np.uint32 if m == 4 else np.uint64
                counts = np.bitwise_count(groups.view(word))
                h += np.bincount(counts, minlength=m + 1)[: m + 1]
                if h[m // 2 + 1:].any():  # a group keeps more than M/2: no N:M pattern with this M here
                    del self.hist[(dim, m)]

    def result(self) -> tuple[str | None, int | None]:
        for dim in (-1, 1, 0):
            for m in NM_GROUP_SIZES:
                h = self.hist.get((dim, m))
                if h is None or not h.any():
                    continue
                n = int(np.flatnonzero(h)[-1])
                if 1 <= n <= m // 2 and h[n] >= NM_EXACT_FRACTION * h.sum():
                    return f"{n}:{m}", dim
        return None, None


def scan_tensor(ref: TensorRef, name: str | None = None, chunk_elements: int = CHUNK_ELEMENTS) -> TensorScan:
    """Read one tensor block by block: its mask ``!= 0`` (bit-packed), exact zeros and N:M pattern."""
    pieces = []
    kept = 0
    search = _NMSearch(ref.shape, blocks_hold_whole_slices(ref, chunk_elements))
    for start, stop in iter_chunks(ref, chunk_elements):
        m = nonzero(ref.raw(start, stop), ref.dtype)
        kept += int(np.count_nonzero(m))
        search.update(m)
        pieces.append(pack_mask(m))  # every block but the last holds a multiple of 8 weights: pieces concatenate
        del m
    packed = np.concatenate(pieces) if pieces else np.zeros(0, np.uint8)
    pattern, dim = search.result()
    return TensorScan(name or ref.name, ref.shape, ref.dtype, ref.size - kept, pattern, dim, packed)


def all_ones_packed(size: int) -> np.ndarray:
    """The bit-packed all-ones mask of ``size`` weights (padding bits zero)."""
    packed = np.full((size + 7) // 8, 255, dtype=np.uint8)
    if size % 8:
        packed[-1] = (0xFF << (8 - size % 8)) & 0xFF
    return packed


class _LazyWeights(Mapping):
    """A read-only mapping that reads each tensor's values only when iterated (the store writes them one by one)."""

    def __init__(self, refs: dict[str, TensorRef]) -> None:
        self._refs = refs

    def __getitem__(self, key: str) -> np.ndarray:
        ref = self._refs[key]
        return ref.values().reshape(ref.shape)

    def __iter__(self) -> Iterator[str]:
        return iter(self._refs)

    def __len__(self) -> int:
        return len(self._refs)


def _canonical_refs(ck: Checkpoint) -> dict[str, TensorRef]:
    pairs = [k for k in ck.tensors if k.endswith("_mask") and k[:-5] + "_orig" in ck.tensors]
    if pairs:
        raise ConfigError(f"{ck.path}: holds torch.nn.utils.prune masks (e.g. {pairs[0]!r}), not exact zeros; "
                          "import it with 'ticketlab import torch-prune'")
    out: dict[str, TensorRef] = {}
    for key, ref in ck.tensors.items():
        if not key or "\x00" in key or key in (".", ".."):
            raise TicketFileError(f"{ck.path}: tensor name {short_repr(key)} cannot name a tensor of a ticket file "
                                  "(empty, '.', '..' or with a NUL character)")
        c = canonical_key(key)
        if c in out:
            raise TicketFileError(f"{ck.path}: keys {out[c].name!r} and {key!r} both name tensor {c!r}")
        out[c] = ref
    return out


def _model_name(src: Path) -> str:
    cfg = src / "config.json" if src.is_dir() else src.parent / "config.json"
    try:
        info = json.loads(cfg.read_text())
        archs = info.get("architectures") or []
        return str(info.get("_name_or_path") or (archs[0] if archs else None) or info.get("model_type") or src.stem)
    except (OSError, ValueError, AttributeError):
        return src.stem if src.is_file() else src.name


def import_checkpoint(sources: Sequence[str | os.PathLike], out: str | os.PathLike, *,
                      zero_threshold: float = DEFAULT_ZERO_THRESHOLD, weights: bool = False,
                      init: str | os.PathLike | None = None, model: str | None = None, start_level: int = 0,
                      overwrite: bool = False, chunk_elements: int = CHUNK_ELEMENTS) -> ImportResult:
    """Import one or more dense checkpoints with exact zeros as the levels of one ticket file.

    Parameters
    ----------
    sources : sequence of path-like
        PyTorch state-dict files, ``.safetensors`` files or (sharded) Hugging Face directories, one per level,
        in level order. All must hold the same masked tensors (floating point, ≥ 2-D) with the same shapes.
    out : path-like
        The ticket file to write (atomically: nothing appears there unless the import succeeds).
    zero_threshold : float
        Zero fraction above which a tensor without an N:M pattern counts as pruned (default 0.01).
    weights : bool
        Also store each level's weights (kept values only, float32 for bfloat16; about 4 bytes per weight of
        the largest tensor in memory). Default: masks only.
    init : path-like, optional
        A checkpoint of the initial weights, stored as the run's ``init`` weights (read one tensor at a time).
    model : str, optional
        Model name recorded in the file (default: from ``config.json`` beside the checkpoint, or its name).
    start_level : int
        Level number of the first source (default 0).
    overwrite : bool
        Replace ``out`` if it exists.
    chunk_elements : int
        Weights per block read (memory per block ≈ 3 bytes per weight for bfloat16).

    Returns
    -------
    ImportResult
        With one ``tensors`` record per (level, tensor): exact zeros, zero fraction, N:M pattern, pruned.
    """
    if not sources:
        raise ConfigError("give at least one checkpoint to import")
    if not 0 <= zero_threshold < 1:
        raise ConfigError(f"zero threshold must be a fraction in [0, 1); got {zero_threshold}")
    out = check_output(out, overwrite)
    sources = [Path(s) for s in sources]
    result = ImportResult(out, ", ".join(map(str, sources)), "checkpoint")

    with Checkpoint(sources[0]) as first:
        refs = _canonical_refs(first)
        result.notes += first.notes
        masked = {k: r for k, r in refs.items() if r.is_float and len(r.shape) >= 2 and r.size > 0}
        skipped_int = [k for k, r in refs.items() if not r.is_float and len(r.shape) >= 2]
        if skipped_int:
            result.notes.append(f"{len(skipped_int)} integer tensors are not masked (quantised weights or indices: "
                                f"'nonzero' says nothing about pruning there), e.g. {skipped_int[0]!r}")
        if not masked:
            raise TicketFileError(f"{sources[0]}: no floating-point tensor with two or more dimensions to take a "
                                  "mask from")
        names = list(masked)
        if any(r.source.endswith(".safetensors") for r in masked.values()):
            names.sort(key=natural_key)  # safetensors headers are sorted by name; layers.2 before layers.10
        tensors = [TensorInfo(n, masked[n].shape, tensor_kind(n, masked[n].shape), pruned=False) for n in names]

    config = {
        "import": {"kind": "checkpoint", "sources": [str(s.resolve()) for s in sources],
                   "zero_threshold": zero_threshold, "nm_group_sizes": list(NM_GROUP_SIZES),
                   "nm_exact_fraction": NM_EXACT_FRACTION, "weights": bool(weights),
                   "init": None if init is None else str(Path(init).resolve())},
    }
    model = model or _model_name(sources[0])
    pruned_any = {t.name: False for t in tensors}
    report: dict[str, Any] = {"levels": {}}
    with atomic_output(out, tag="import") as tmp:
        init_ck = Checkpoint(init) if init is not None else None
        try:
            init_weights = _LazyWeights(_canonical_refs(init_ck)) if init_ck is not None else None
            store.create(tmp, tensors=tensors, model=model, config=config, seed=None, init_weights=init_weights,
                         method=f"imported: exact zeros of dense checkpoints (pruned if zeros > {zero_threshold:g} "
                                "or N:M)", overwrite=True)
        finally:
            if init_ck is not None:
                init_ck.close()
        writer = store.TicketWriter(tmp)
        for i, src in enumerate(sources):
            level = start_level + i
            with Checkpoint(src) as ck:
                refs = _canonical_refs(ck)
                if i:
                    result.notes += ck.notes
                _check_inventory(src, refs, tensors)
                records = _write_level(writer, level, src, refs, tensors, zero_threshold, weights, chunk_elements,
                                       pruned_any)
            result.tensors += records
            kept = sum(r["kept"] for r in records)
            size = sum(t.size for t in tensors)
            result.levels.append({"level": level, "branch": None, "kept": kept, "size": size,
                                  "density": density(kept, size), "source": str(src)})
            report["levels"][str(level)] = [{k: r[k] for k in ("layer", "dtype", "zeros", "pattern", "pattern_dim",
                                                                "pruned")} for r in records]
        writer.write_state("import", report)
        writer.set_status("complete")
    chance = [r for r in result.tensors if not r["pruned"] and r["zeros"]]
    if chance:
        result.notes.append(
            f"{len(chance)} dense tensor(s) hold exact zeros by chance (zero fraction <= {zero_threshold:g}, no N:M "
            f"pattern), e.g. {chance[0]['layer']} with {chance[0]['zeros']:,}; they are not counted as pruned "
            "(their masks are all ones); lower --zero-threshold to count them")
    return result


def _check_inventory(src: Path, refs: dict[str, TensorRef], tensors: list[TensorInfo]) -> None:
    for t in tensors:
        ref = refs.get(t.name)
        if ref is None:
            raise TicketFileError(f"{src}: has no tensor {t.name!r}, which the first checkpoint has; all levels "
                                  "must hold the same tensors")
        if tuple(ref.shape) != t.shape:
            raise TicketFileError(f"{src}: tensor {t.name!r} has shape {list(ref.shape)}, but {list(t.shape)} in the "
                                  "first checkpoint")


def _write_level(writer: store.TicketWriter, level: int, src: Path, refs: dict[str, TensorRef],
                 tensors: list[TensorInfo], zero_threshold: float, weights: bool, chunk_elements: int,
                 pruned_any: dict[str, bool]) -> list[dict[str, Any]]:
    records = []
    attrs = {"source": str(src), "zero_threshold": float(zero_threshold)}
    with writer.level_writer(level, attrs=attrs) as sink:
        for t in tensors:
            ref = refs[t.name]
            scan = scan_tensor(ref, t.name, chunk_elements)
            pruned = scan.pruned(zero_threshold)
            packed = scan.packed if pruned else all_ones_packed(t.size)
            kept = t.size - scan.zeros if pruned else t.size
            sink.add_mask(t.name, packed=packed, kept=kept)
            pruned_any[t.name] = pruned_any[t.name] or pruned
            if weights:
                mask = unpack_mask(packed, t.shape)
                sink.add_weight(t.name, ref.values().reshape(t.shape), mask=mask, torch_dtype=ref.dtype)
                del mask
            records.append({"level": level, "layer": t.name, "shape": "x".join(map(str, t.shape)),
                            "dtype": ref.dtype, "size": t.size, "zeros": scan.zeros,
                            "zero_fraction": scan.zero_fraction, "pattern": scan.pattern,
                            "pattern_dim": scan.pattern_dim, "pruned": pruned, "kept": kept})
            del scan, packed
        if weights:
            table = {t.name for t in tensors}
            for key, ref in refs.items():
                if key not in table:
                    sink.add_weight(key, ref.values().reshape(ref.shape), torch_dtype=ref.dtype)
        sink.set_pruned(pruned_any)
    return records
