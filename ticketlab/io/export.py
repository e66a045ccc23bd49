"""Hand tickets to other tools: state dicts for ``torch.nn.utils.prune`` and plain masked state dicts.

Two formats (:data:`FORMATS`, a :class:`~ticketlab.registry.Registry` of :class:`ExportFormat`):

- ``"torch-prune"``: the state dict of a model pruned with ``torch.nn.utils.prune``: ``<name>_orig`` (the
  weights, unmasked) and ``<name>_mask`` (the mask, 0/1 in the weight's dtype, as ``prune`` stores it) for
  every masked tensor of the ticket, every other parameter and buffer as it is. It loads with ``strict=True``
  into a model on which ``prune.identity`` (or ``prune.custom_from_mask``) was applied to those tensors;
  :func:`apply_ticket` does that for you. Importing it back (``ticketlab import torch-prune``) gives the same
  masks and kept weights bit for bit.
- ``"state-dict"``: the plain state dict with the mask applied (pruned weights are exact zeros); it loads into
  the unpruned model. Importing it back (``ticketlab import checkpoint``) recovers the mask exactly unless a
  kept weight is itself exactly zero.

Which weights (:data:`WEIGHT_CHOICES`, a registry of :class:`WeightChoice`): ``"trained"`` — the level's
trained weights, stored by training runs and most imports; ``"init"`` — the initial weights (a branch's own,
e.g. ``reinit``, when it has them); ``"rewind"`` — the rewind point of a ``rewind:K`` run; ``"auto"``
(default) — trained if stored, else init.
Every function returns a one-line note that says which were used. Outputs are written through
:func:`ticketlab.outputs.atomic_output`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ticketlab.errors import ConfigError, TicketFileError
from ticketlab.io.names import canonical_key, pruned_names
from ticketlab.outputs import atomic_output
from ticketlab.registry import Registry
from ticketlab.store import TicketFile, resolve_level

Arrays = tuple[dict[str, np.ndarray], dict[str, str], str]  # (arrays, torch dtypes, note)


@dataclass(frozen=True)
class ExportFormat:
    """One output format: ``convert(key, weight, mask)`` gives the state-dict entries of one masked tensor."""

    name: str
    description: str
    convert: Callable[[str, Any, Any], dict[str, Any]]


@dataclass(frozen=True)
class WeightChoice:
    """One ``weights=`` choice: ``load(ticket, level, branch, where)`` gives ``(arrays, torch dtypes, note)``."""

    name: str
    description: str
    load: Callable[[TicketFile, int, str | None, str], Arrays]


FORMATS: Registry[ExportFormat] = Registry("export format")
WEIGHT_CHOICES: Registry[WeightChoice] = Registry("weights choice")


def _torch_prune_entries(key: str, w: Any, mask: Any) -> dict[str, Any]:
    orig, mask_key = pruned_names(key)
    return {orig: w, mask_key: mask.to(w.dtype)}


FORMATS.register("torch-prune", ExportFormat(
    "torch-prune", "writes <name>_orig (the weights) and <name>_mask (the mask) for every masked tensor, as a "
    "model pruned with torch.nn.utils.prune has them", _torch_prune_entries))
FORMATS.register("state-dict", ExportFormat(
    "state-dict", "writes the plain state dict with the mask applied (pruned weights are exact zeros)",
    lambda key, w, mask: {key: w.masked_fill(~mask, 0)}))


def _open(ticket: TicketFile | str | os.PathLike) -> tuple[TicketFile, bool]:
    return (ticket, False) if isinstance(ticket, TicketFile) else (TicketFile(ticket), True)


def _trained(ticket: TicketFile, level: int, branch: str | None, where: str) -> Arrays:
    arrays = ticket.weights(level=level, branch=branch)
    return arrays, ticket.weight_dtypes(level=level, branch=branch), f"trained weights of {where}"


def _strictly_trained(ticket: TicketFile, level: int, branch: str | None, where: str) -> Arrays:
    # has_weights reads nothing and raises on damage: stored-but-damaged weights are an error, not "none stored"
    if not ticket.has_weights(level=level, branch=branch):
        raise TicketFileError(f"{ticket.path}: {where} has no stored trained weights; use --weights init "
                              "(or rewind) to export the initial weights with its mask")
    return _trained(ticket, level, branch, where)


def _init(ticket: TicketFile, level: int, branch: str | None, where: str, prefix: str = "") -> Arrays:
    if branch and ticket.has_weights("init", level=level, branch=branch):
        arrays = ticket.weights("init", level=level, branch=branch)
        return (arrays, ticket.weight_dtypes("init", level=level, branch=branch),
                f"initial weights of {where} (its own) with its mask")
    if "init" not in ticket.checkpoints():
        raise TicketFileError(
            f"{ticket.path}: stores no weights for {where} (no trained weights and no init checkpoint; e.g. an "
            "import of masks only); apply its mask to your own model with ticketlab.io.apply_ticket(model, FILE, "
            "level)")
    arrays = ticket.weights("init")
    return arrays, ticket.weight_dtypes("init"), f"{prefix}initial weights with the mask of {where}"


def _auto(ticket: TicketFile, level: int, branch: str | None, where: str) -> Arrays:
    if ticket.has_weights(level=level, branch=branch):
        return _trained(ticket, level, branch, where)
    return _init(ticket, level, branch, where, prefix="no trained weights stored: ")


def _rewind(ticket: TicketFile, level: int, branch: str | None, where: str) -> Arrays:
    arrays = ticket.weights("rewind")
    return arrays, ticket.weight_dtypes("rewind"), f"rewind-point weights with the mask of {where}"


for _choice in [
    WeightChoice("auto", "trained if stored, else init", _auto),
    WeightChoice("trained", "the level's trained weights", _strictly_trained),
    WeightChoice("init", "the initial weights, a branch's own when it has them", _init),
    WeightChoice("rewind", "the rewind point of a rewind:K run", _rewind),
]:
    WEIGHT_CHOICES.register(_choice.name, _choice)


def ticket_weights(ticket: TicketFile, level: int, *, weights: str = "auto", branch: str | None = None
                   ) -> Arrays:
    """The weights to export for ``level`` (or its ``branch``): ``(arrays, torch dtypes, note)``.

    Arrays are as stored (trained weights zero at pruned positions, init and rewind weights dense); bfloat16
    comes back as float32 with ``"bfloat16"`` in the dtypes.
    """
    where = f"level {level}" + (f" branch {branch!r}" if branch else "")
    return WEIGHT_CHOICES.get(weights).load(ticket, level, branch, where)


def _to_torch(arr: np.ndarray, dtype: str | None) -> Any:
    import torch

    t = torch.from_numpy(np.array(arr, copy=True))
    if dtype and dtype != str(t.dtype).replace("torch.", "") and hasattr(torch, dtype):
        t = t.to(getattr(torch, dtype))
    return t


def export_state_dict(ticket: TicketFile | str | os.PathLike, level: int | None = None, *,
                      format: str = "state-dict", weights: str = "auto", branch: str | None = None
                      ) -> tuple[dict[str, Any], str]:
    """Build the exported state dict of one level: ``(state_dict of torch tensors, note)``.

    Parameters
    ----------
    ticket : TicketFile or path-like
    level : int, optional
        Default: the last level; negative values count from the end.
    format : {"torch-prune", "state-dict"}
        See the module docstring.
    weights : {"auto", "trained", "init", "rewind"}
        See the module docstring.
    branch : str, optional
        Export a control branch of the level instead of the level itself.
    """
    import torch

    fmt = FORMATS.get(format)
    WEIGHT_CHOICES.get(weights)  # an unknown name fails before the file is opened
    t, close = _open(ticket)
    try:
        level = resolve_level(t, level)
        masks = t.masks(level, branch=branch)
        arrays, dtypes, note = ticket_weights(t, level, weights=weights, branch=branch)
    finally:
        if close:
            t.close()
    missing = [k for k in masks if k not in arrays]
    if missing:
        raise TicketFileError(f"{t.path}: the exported weights lack masked tensor {missing[0]!r}")
    out: dict[str, Any] = {}
    for key, arr in arrays.items():
        w = _to_torch(arr, dtypes.get(key))
        m = masks.get(key)
        if m is None:
            out[key] = w
            continue
        out.update(fmt.convert(key, w, torch.from_numpy(np.array(m, copy=True))))
    return out, note


def export(path: str | os.PathLike, out: str | os.PathLike, level: int | None = None, *,
           format: str = "state-dict", weights: str = "auto", branch: str | None = None,
           overwrite: bool = False) -> str:
    """Write :func:`export_state_dict` to ``out`` (``torch.save``; safetensors when ``out`` ends in
    ``.safetensors``), atomically. Returns the note on which weights were used."""
    import torch

    out = Path(out)
    if out.exists() and not overwrite:
        raise TicketFileError(f"{out}: already exists; choose another path or pass --overwrite")
    if not out.parent.exists():
        raise TicketFileError(f"{out}: directory {out.parent} does not exist")
    sd, note = export_state_dict(path, level, format=format, weights=weights, branch=branch)
    with atomic_output(out, tag="export") as tmp:
        if out.suffix == ".safetensors":
            from ticketlab.io.tensorfiles import torch_raw, write_safetensors

            write_safetensors(tmp, ((k, tuple(v.shape), str(v.dtype).replace("torch.", ""), [torch_raw(v)])
                                    for k, v in sd.items()), metadata={"format": "pt"})
        else:
            torch.save(sd, tmp)
    return note


def _targets(module: Any) -> dict[str, tuple[Any, str]]:
    """Canonical weight name → (submodule, attribute name) for every parameter of ``module``; a tensor already
    pruned by ``torch.nn.utils.prune`` is found under its plain name."""
    found: dict[str, tuple[Any, str]] = {}
    for mod_name, sub in module.named_modules():
        for pname, _ in sub.named_parameters(recurse=False):
            attr = pname
            if pname.endswith("_orig") and hasattr(sub, pname[:-5] + "_mask"):
                attr = pname[:-5]
            full = f"{mod_name}.{attr}" if mod_name else attr
            found.setdefault(canonical_key(full), (sub, attr))
    return found


def apply_ticket(module: Any, ticket: TicketFile | str | os.PathLike, level: int | None = None, *,
                 branch: str | None = None, weights: str | None = None) -> Any:
    """Prune ``module`` in place with a ticket's mask through ``torch.nn.utils.prune.custom_from_mask``.

    Parameters
    ----------
    module : torch.nn.Module
        A model with the ticket's parameter names (wrappers such as DDP or ``torch.compile`` are fine).
    ticket : TicketFile or path-like
    level : int, optional
        Default: the last level.
    branch : str, optional
        Use a control branch's mask.
    weights : {"auto", "trained", "init", "rewind"}, optional
        Also load these weights of the ticket (``None``, the default, keeps the module's own weights).

    Returns
    -------
    torch.nn.Module
        ``module``, with ``<name>_orig``/``<name>_mask`` and prune's forward hooks on every masked tensor. A
        tensor that was already pruned gets the product of both masks (prune composes masks).
    """
    import torch
    from torch.nn.utils import prune

    t, close = _open(ticket)
    try:
        level = resolve_level(t, level)
        masks = t.masks(level, branch=branch)
        targets = _targets(module)
        missing = [k for k in masks if k not in targets]
        if missing:
            raise ConfigError(f"the module has no parameter {missing[0]!r} that {t.path} masks (module's: "
                              f"{', '.join(list(targets)[:8])}{', ...' if len(targets) > 8 else ''})")
        for name, m in masks.items():
            sub, attr = targets[name]
            shape = tuple(getattr(sub, attr).shape)
            if shape != m.shape:
                raise ConfigError(f"parameter {name!r} has shape {list(shape)} but the ticket's mask has "
                                  f"{list(m.shape)}")
        if weights is not None:
            sd, _ = export_state_dict(t, level, format="torch-prune", weights=weights, branch=branch)
    finally:
        if close:
            t.close()
    for name, m in masks.items():
        sub, attr = targets[name]
        prune.custom_from_mask(sub, attr, torch.from_numpy(np.array(m, copy=True)))
    if weights is not None:
        actual = {canonical_key(k): k for k in module.state_dict()}
        unknown = [k for k in sd if k not in actual]
        if unknown:
            raise ConfigError(f"the module has no entry {unknown[0]!r} for the ticket's weights")
        module.load_state_dict({actual[k]: v for k, v in sd.items()}, strict=False)
        with torch.no_grad():  # recompute the masked weights now, not only at the next forward
            for name in masks:
                sub, attr = targets[name]
                setattr(sub, attr, getattr(sub, attr + "_orig") * getattr(sub, attr + "_mask"))
    return module
