"""Canonical names for the state dicts of pruned and wrapped models.

One state dict, many spellings of the same weight ``fc1.weight``:

==========================================  ===============================================================
key in the state dict                       what it is
==========================================  ===============================================================
``fc1.weight``                              a plain weight
``module.fc1.weight``                       the same under DataParallel / DistributedDataParallel
``_orig_mod.fc1.weight``                    the same under ``torch.compile`` (also inside: ``enc._orig_mod.x``)
``fc1.weight_orig`` + ``fc1.weight_mask``   ``torch.nn.utils.prune``: the unmasked weight and its 0/1 mask
                                            (the effective weight is their product)
``fc1.parametrizations.weight.original``    ``torch.nn.utils.parametrize``: the unmasked weight
``fc1.parametrizations.weight.0.mask``      a mask held by parametrization 0 (any buffer whose name contains
                                            ``mask``); several masks of one weight multiply
==========================================  ===============================================================

:func:`normalise_state_dict` maps all of these to canonical names and separates weights from masks. ``X_orig``
is recognised only when its ``X_mask`` partner is present, so a parameter that merely ends in ``_orig`` keeps
its name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from ticketlab.errors import TicketFileError

_PARAMETRIZED = re.compile(r"^(?P<prefix>(?:.*\.)?)parametrizations\.(?P<attr>[^.]+)\.(?P<rest>.+)$")


def canonical_key(key: str) -> str:
    """Strip wrapper prefixes: leading ``module.`` / ``_orig_mod.`` and any inner ``_orig_mod.`` segment."""
    # Imported here, not at the top: ticketlab.models imports torch, which the command line's parser (it lists
    # the import kinds of ticketlab.io) should not pay for.
    from ticketlab.models.tensors import canonical_name

    key = canonical_name(key)
    while "._orig_mod." in key:
        key = key.replace("._orig_mod.", ".")
    return key


def pruned_names(name: str) -> tuple[str, str]:
    """The ``torch.nn.utils.prune`` keys of canonical weight ``name``: (``name_orig``, ``name_mask``)."""
    return f"{name}_orig", f"{name}_mask"


@dataclass
class NormalisedStateDict:
    """A state dict under canonical names.

    Attributes
    ----------
    weights : dict of str to tensor
        Every parameter and buffer under its canonical key, in the original order; for a masked weight, the
        *unmasked* tensor (``weight_orig`` / ``parametrizations.weight.original``).
    masks : dict of str to tensor
        The mask of each masked weight, keyed like ``weights`` (values as stored: 0/1 floats for prune).
    notes : list of str
    """

    weights: dict[str, Any] = field(default_factory=dict)
    masks: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def normalise_state_dict(sd: Mapping[str, Any], source: str = "state dict") -> NormalisedStateDict:
    """Map a (possibly pruned, parametrized, DDP-wrapped or compiled) state dict to canonical names.

    Raises :class:`TicketFileError` when two keys name the same canonical tensor (e.g. both
    ``module.fc.weight`` and ``fc.weight``) or a mask's shape differs from its weight's.
    """
    canon: dict[str, tuple[str, Any]] = {}
    for key, value in sd.items():
        c = canonical_key(str(key))
        if c in canon:
            raise TicketFileError(f"{source}: keys {canon[c][0]!r} and {key!r} both name tensor {c!r}")
        canon[c] = (str(key), value)

    out = NormalisedStateDict()
    mask_parts: dict[str, list[Any]] = {}
    origin: dict[str, str] = {}

    def put(name: str, value: Any, key: str) -> None:
        if name in out.weights:
            raise TicketFileError(f"{source}: keys {origin[name]!r} and {key!r} both name tensor {name!r}")
        out.weights[name] = value
        origin[name] = key

    for c, (key, value) in canon.items():
        if c.endswith("_mask") and c[:-5] + "_orig" in canon:
            mask_parts.setdefault(c[:-5], []).append(value)
            continue
        if c.endswith("_orig") and c[:-5] + "_mask" in canon:
            put(c[:-5], value, key)
            continue
        m = _PARAMETRIZED.match(c)
        if m:
            name = m["prefix"] + m["attr"]
            rest = m["rest"]
            if rest == "original":
                put(name, value, key)
                continue
            last = rest.rsplit(".", 1)[-1]
            if re.fullmatch(r"\d+\..+", rest) and "mask" in last.lower():
                mask_parts.setdefault(name, []).append(value)
                continue
            out.notes.append(f"{source}: kept parametrization tensor {key!r} as it is (not a mask)")
        put(c, value, key)

    for name, parts in mask_parts.items():
        if name not in out.weights:
            raise TicketFileError(f"{source}: a mask for {name!r} but no weight it applies to")
        shape = tuple(out.weights[name].shape)
        for p in parts:
            if tuple(p.shape) != shape:
                raise TicketFileError(
                    f"{source}: the mask of {name!r} has shape {list(p.shape)} but the weight has {list(shape)}")
        mask = parts[0]
        for p in parts[1:]:
            mask = mask * p
        out.masks[name] = mask
    return out
