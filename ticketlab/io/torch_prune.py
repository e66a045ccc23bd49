"""Import state dicts pruned with ``torch.nn.utils.prune`` (or masked with ``torch.nn.utils.parametrize``).

Each file is ``torch.save(model.state_dict())`` of a pruned model: ``<name>_orig`` (the unmasked weight) and
``<name>_mask`` (its 0/1 mask) for every pruned tensor, or ``parametrizations.<name>.original`` with a mask
buffer; keys may carry the ``module.`` (DataParallel/DDP) and ``_orig_mod.`` (``torch.compile``) prefixes. All are
normalised to canonical names (:mod:`ticketlab.io.names`). Several files become levels ``start_level``,
``start_level + 1``, ... of one ticket file, in the order given.

- The ticket's masked tensors are the tensors that carry a mask in any file. In a file where such a tensor has
  no mask but a plain weight (e.g. the dense model before pruning), its mask is all ones.
- A tensor whose mask is all ones in every file (``prune.identity``) is marked ``pruned=False``.
- Each level's weights are the state dict itself (every parameter and buffer); masked tensors are stored as their
  kept values (``orig * mask``), as for every level of a ticket file.
- A whole pickled module (``torch.save(model)``) is refused: ticketlab loads only with ``weights_only=True``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ticketlab import store
from ticketlab.errors import ConfigError, TicketFileError
from ticketlab.io.common import ImportResult, check_output, tensor_kind
from ticketlab.io.names import NormalisedStateDict, canonical_key, normalise_state_dict
from ticketlab.io.tensorfiles import load_torch, state_dict_of
from ticketlab.masks import TensorInfo, as_bool_mask, density, pack_mask, unpack_mask
from ticketlab.outputs import atomic_output


def read_pruned_state_dict(path: str | os.PathLike) -> tuple[NormalisedStateDict, list[str]]:
    """Load (``weights_only=True``) and normalise one pruned state dict; returns it and notes."""
    obj = load_torch(path, what="state dict")
    sd, notes = state_dict_of(obj, path)
    norm = normalise_state_dict(sd, str(path))
    stripped = [k for k in sd if canonical_key(k) != k]
    if stripped:
        notes.append(f"{path}: stripped wrapper prefixes (module. / _orig_mod.) from {len(stripped)} keys, "
                     f"e.g. {stripped[0]!r}")
    return norm, notes + norm.notes


def mask_array(name: str, value: Any, source: str) -> np.ndarray:
    """A stored mask (torch tensor of 0/1, any dtype) as a boolean array; other values are refused."""
    t = value.detach()
    if str(t.dtype) in ("torch.bfloat16", "torch.float8_e4m3fn", "torch.float8_e5m2"):
        t = t.float()
    try:
        return as_bool_mask(name, t.numpy())
    except ConfigError as err:
        raise TicketFileError(f"{source}: {err}") from None


def import_torch_prune(sources: Sequence[str | os.PathLike], out: str | os.PathLike, *,
                       init: str | os.PathLike | None = None, weights: bool = True, model: str | None = None,
                       start_level: int = 0, overwrite: bool = False) -> ImportResult:
    """Import pruned state dicts, one per level in the order given, into one ticket file.

    Parameters
    ----------
    sources : sequence of path-like
        ``torch.save(model.state_dict())`` files of a model pruned with ``torch.nn.utils.prune`` or masked with
        ``torch.nn.utils.parametrize``.
    out : path-like
        The ticket file (written atomically).
    init : path-like, optional
        A state dict of the initial weights (plain or pruned: ``_orig`` tensors are taken), stored as ``init``.
    weights : bool
        Store each level's weights (default).
    model : str, optional
        Model name recorded in the file (default ``"unknown"``).
    start_level : int
        Level number of the first file (default 0).
    overwrite : bool
        Replace ``out`` if it exists.
    """
    if not sources:
        raise ConfigError("give at least one state dict to import")
    if start_level < 0:
        raise ConfigError(f"the first level must be >= 0; got {start_level}")
    out = check_output(out, overwrite)
    sources = [Path(s) for s in sources]
    result = ImportResult(out, ", ".join(map(str, sources)), "torch-prune")

    # Pass 1: the tensor table and every level's masks (kept bit-packed; state dicts are re-read for weights).
    names: list[str] = []
    shapes: dict[str, tuple[int, ...]] = {}
    per_level: list[dict[str, np.ndarray]] = []
    has_zeros: dict[str, bool] = {}
    for src in sources:
        norm, notes = read_pruned_state_dict(src)
        result.notes += notes
        packed = {}
        for name, value in norm.masks.items():
            if name not in shapes:
                names.append(name)
                shapes[name] = tuple(int(s) for s in value.shape)
            elif shapes[name] != tuple(value.shape):
                raise TicketFileError(f"{src}: mask {name!r} has shape {list(value.shape)} but "
                                      f"{list(shapes[name])} in an earlier file")
            m = mask_array(name, value, str(src))
            has_zeros[name] = has_zeros.get(name, False) or not m.all()
            packed[name] = pack_mask(m)
        per_level.append(packed)
    if not names:
        raise TicketFileError(
            f"{', '.join(map(str, sources))}: no torch.nn.utils.prune masks (<name>_orig / <name>_mask pairs) or "
            "parametrize masks found; for a checkpoint whose pruned weights are exact zeros use "
            "'ticketlab import checkpoint'")
    tensors = [TensorInfo(n, shapes[n], tensor_kind(n, shapes[n]), pruned=has_zeros[n]) for n in names]
    unpruned = [t.name for t in tensors if not t.pruned]
    if unpruned:
        result.notes.append(f"masked but never pruned (all-ones masks; marked unpruned): {', '.join(unpruned)}")

    init_sd = None
    if init is not None:
        norm, notes = read_pruned_state_dict(init)
        result.notes += notes
        init_sd = norm.weights
        for t in tensors:
            if t.name not in init_sd or tuple(init_sd[t.name].shape) != t.shape:
                raise TicketFileError(f"{init}: has no weight {t.name!r} of shape {list(t.shape)}")

    config = {"import": {"kind": "torch-prune", "sources": [str(s.resolve()) for s in sources],
                         "init": None if init is None else str(Path(init).resolve()), "weights": bool(weights),
                         "start_level": start_level}}
    size = sum(t.size for t in tensors)
    with atomic_output(out, tag="import") as tmp:
        store.create(tmp, tensors=tensors, model=model or "unknown", config=config, seed=None, init_weights=init_sd,
                     method="imported: torch.nn.utils.prune masks", overwrite=True)
        writer = store.TicketWriter(tmp)
        for i, (src, packed) in enumerate(zip(sources, per_level)):
            level = start_level + i
            norm = read_pruned_state_dict(src)[0] if weights or len(packed) < len(names) else None
            masks = {}
            for t in tensors:
                if t.name in packed:
                    masks[t.name] = unpack_mask(packed[t.name], t.shape)
                elif norm is not None and t.name in norm.weights and tuple(norm.weights[t.name].shape) == t.shape:
                    masks[t.name] = np.ones(t.shape, dtype=bool)
                    result.notes.append(f"{src}: {t.name} has no mask (not pruned in this file); all ones at "
                                        f"level {level}")
                else:
                    raise TicketFileError(f"{src}: has neither a mask nor a weight {t.name!r} of shape {list(t.shape)}")
            writer.write_level(level, masks, weights=norm.weights if weights else None, attrs={"source": str(src)})
            kept = sum(int(np.count_nonzero(m)) for m in masks.values())
            result.levels.append({"level": level, "branch": None, "kept": kept, "size": size,
                                  "density": density(kept, size), "source": str(src)})
            del norm, masks
        writer.set_status("complete")
    return result
