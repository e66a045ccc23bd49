"""Resuming a group: one checkpoint file holding every chain's state, written atomically.

A group is cut into segments of ``checkpoint_every`` steps (:func:`ticketlab.batched.train_chains`). After each
segment, one file holds, per chain: the chain's identity (seed, config, window, and digests of its starting weights
and masks), its weights, its :class:`~ticketlab.training.TrainState` (the single path's resume state: optimizer
state in the ``torch.optim`` format, curve, training-loss window) and the snapshots taken so far. It is written
with :func:`ticketlab.outputs.atomic_output`, so a kill leaves the previous complete checkpoint. A restarted call
with the same chains continues every chain from it; the result is bit for bit that of an uninterrupted call on the
same device and thread count (segments are exact cuts: the data order and learning rate are functions of the
iteration, and the state carries everything else). A checkpoint of other chains is refused.

Each chain's state is also what the single-chain path resumes from, so a chain can leave its group (or a group can
be re-formed) and continue with :func:`ticketlab.training.train` ``(..., state=...)``.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ticketlab.batched.spec import ChainResult, ChainSpec
from ticketlab.errors import ConfigError
from ticketlab.outputs import atomic_output
from ticketlab.training import TrainState

__all__ = ["chain_identity", "save_checkpoint", "load_checkpoint", "load_results", "resume_specs", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "ticketlab-batched-checkpoint"
CHECKPOINT_VERSION = 1


def _digest(tensors: Mapping[str, Any] | None) -> str:
    """SHA-256 of named arrays (name, dtype, shape and bytes, in name order)."""
    h = hashlib.sha256()
    for name in sorted(tensors or {}):
        value = tensors[name]
        arr = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        arr = np.ascontiguousarray(arr)
        h.update(f"{name}|{arr.dtype.str}|{arr.shape}|".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def chain_identity(spec: ChainSpec) -> dict[str, Any]:
    """What a checkpoint must match to continue ``spec``: seed, config, window, starting weights and masks."""
    return {
        "seed": int(spec.seed), "config": spec.config.to_dict(), "start": int(spec.start_iteration),
        "stop": int(spec.stop), "weights": _digest(spec.weights), "masks": _digest(spec.masks),
        "state_iteration": None if spec.state is None else int(spec.state.iteration),
    }


_RESULT_FIELDS = ("early_stop_iteration", "start_iteration", "stop_iteration", "run_start_iteration", "val_loss",
                  "val_accuracy", "test_loss", "test_accuracy", "num_classes", "wall_time")


def _result_dict(r: ChainResult) -> dict[str, Any]:
    """A chain's result without its state, as plain values and tensors (loadable with ``weights_only``)."""
    res = r.result
    out = {key: getattr(res, key) for key in _RESULT_FIELDS}
    out["curve"] = {c: torch.from_numpy(np.asarray(v)) for c, v in res.curve.items()}
    for key in ("test_predictions", "test_targets"):
        value = getattr(res, key)
        out[key] = None if value is None else torch.from_numpy(np.asarray(value))
    out["engine"] = dict(r.engine)
    return out


def save_checkpoint(path: str | Path, identities: Sequence[dict], results: Sequence[ChainResult],
                    snapshots: Sequence[Mapping[int, Mapping[str, torch.Tensor]]] | None = None) -> None:
    """Write a group's checkpoint (atomically): per chain its identity, weights, state, snapshots and result.

    Written after each segment by :func:`ticketlab.batched.train_chains`; a caller can also write one for the
    results of a finished group (``identities`` from :func:`chain_identity`) and read them back with
    :func:`load_results`, e.g. to write every chain's file from it after a kill between two file writes.
    """
    snapshots = snapshots if snapshots is not None else [r.snapshots for r in results]
    payload = {
        "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
        "chains": [
            {"identity": ident, "weights": r.weights, "state": r.state.to_dict(),
             "snapshots": {int(it): dict(sd) for it, sd in snaps.items()}, "result": _result_dict(r)}
            for ident, r, snaps in zip(identities, results, snapshots)
        ],
    }
    with atomic_output(path) as tmp:
        torch.save(payload, tmp)


def load_results(path: str | Path) -> list[ChainResult]:
    """The :class:`ChainResult` of every chain of a checkpoint, as :func:`save_checkpoint` got them."""
    from ticketlab.training import TrainResult

    out = []
    for chain in load_checkpoint(path):
        stored = dict(chain["result"])
        engine = stored.pop("engine")
        curve = {c: v.numpy() for c, v in stored.pop("curve").items()}
        arrays = {}
        for key in ("test_predictions", "test_targets"):
            value = stored.pop(key)
            arrays[key] = None if value is None else value.numpy()
        result = TrainResult(curve=curve, **stored, **arrays, state=TrainState.from_dict(chain["state"]))
        snaps = {int(it): sd for it, sd in chain["snapshots"].items()}
        out.append(ChainResult(weights=chain["weights"], result=result, snapshots=snaps, engine=engine))
    return out


def load_checkpoint(path: str | Path) -> list[dict[str, Any]]:
    """The chains of a checkpoint written by :func:`save_checkpoint` (``ConfigError`` for another file)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ConfigError(f"{path}: not a readable batched-training checkpoint ({type(err).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ConfigError(f"{path}: not a batched-training checkpoint")
    if payload.get("version") != CHECKPOINT_VERSION:
        raise ConfigError(f"{path}: checkpoint version {payload.get('version')!r}; this ticketlab reads "
                          f"{CHECKPOINT_VERSION}")
    return payload["chains"]


def resume_specs(path: str | Path, specs: Sequence[ChainSpec], identities: Sequence[dict]
                 ) -> tuple[list[ChainSpec], list[dict[int, dict[str, torch.Tensor]]]]:
    """The specs continued from the checkpoint at ``path`` (weights, state and start from it), and the snapshots
    taken before it. Refuses a checkpoint of other chains."""
    stored = load_checkpoint(path)
    if len(stored) != len(specs):
        raise ConfigError(f"{path} holds {len(stored)} chains, this group has {len(specs)}; remove the checkpoint "
                          "or pass another path")
    out, taken = [], []
    for k, (spec, ident, chain) in enumerate(zip(specs, identities, stored)):
        if chain["identity"] != ident:
            differ = next(key for key in ident if chain["identity"].get(key) != ident[key])
            raise ConfigError(f"{path}: chain {k} was checkpointed with another {differ}; remove the checkpoint "
                              "or pass another path")
        state = TrainState.from_dict(chain["state"])
        snaps = {int(it): sd for it, sd in chain["snapshots"].items()}
        out.append(dataclasses.replace(
            spec, weights=chain["weights"], state=state, start_iteration=state.iteration,
            snapshot_iterations=tuple(i for i in spec.snapshot_iterations if i >= state.iteration and i not in snaps),
        ))
        taken.append(snaps)
    return out, taken
