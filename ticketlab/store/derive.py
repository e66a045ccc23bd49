"""Tickets derived from other tickets: masks computed from chosen levels of other files, written as level 0 of a
new ticket file with the sources' provenance in its configuration (e.g. ``ticketlab intersect``'s consensus
ticket). The combination itself is given as a function, so the store stays free of analysis code::

    from ticketlab import store
    from ticketlab.analysis.combine import combine_layer

    sources = store.select(["s0.h5:3", "s1.h5:3", "s2.h5:3"])
    store.derive_ticket("consensus.h5", sources, combine_layer, method="intersection of 3 masks")
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ticketlab.errors import ConfigError, TicketFileError
from ticketlab.outputs import check_output
from ticketlab.store.schema import _check_new_path
from ticketlab.store.selection import Selection, check_same_model
from ticketlab.store.writer import write_ticket

__all__ = ["derive_ticket"]


def _source_record(s: Selection) -> dict[str, Any]:
    return {"path": str(s.path.resolve()), "level": s.level, "model": s.ticket.model, "method": s.ticket.method,
            "seed": s.ticket.seed}


def derive_ticket(
    path: str | os.PathLike,
    sources: Sequence[Selection],
    combine: Callable[[list[np.ndarray]], np.ndarray],
    *,
    method: str,
    config: Mapping[str, Any] | None = None,
    init: Selection | None = None,
    attrs: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> dict[str, np.ndarray]:
    """Write a complete ticket whose level 0 is ``combine`` applied, tensor by tensor, to the sources' masks.

    Parameters
    ----------
    path : path-like
        The new ticket file; written atomically (nothing is left behind on an error) under its one-writer lock
        (:func:`ticketlab.outputs.output_lock`), after checking that it is none of the sources.
    sources : sequence of Selection
        The files and levels to combine (see :func:`~ticketlab.store.select`); all of one model.
    combine : callable
        Receives one tensor's boolean masks (one per source, in order) and returns its new mask, e.g.
        ``functools.partial(ticketlab.analysis.combine.combine_layer, mode="vote", min_votes=2)``.
    method : str
        The new file's ``method`` (a short description of how its mask was made).
    config : mapping, optional
        Recorded in the new file's configuration, together with ``model``, ``sources`` (path, level, model,
        method and seed of each source) and ``init`` (where the initial weights came from).
    init : Selection, optional
        The file whose ``init`` checkpoint (and seed) the new ticket takes; default: the first source. When the
        first source has no initial weights (imported masks) and ``init`` is not given, the new ticket holds
        masks only (its configuration's ``init`` is ``None``); a given ``init`` without them is refused.
    attrs : mapping, optional
        Extra attributes of the level group.
    overwrite : bool
        Replace ``path`` if it exists.

    Returns
    -------
    dict of str to ndarray of bool
        The combined masks, in model order. Model name and dataset are those of the first source.
    """
    if not sources:
        raise ConfigError("deriving a ticket needs at least one source ticket")
    _check_new_path(Path(path), overwrite)
    init_sel = init or sources[0]
    inputs = [*sources, init] if init is not None else list(sources)
    check_output(path, inputs=[s.path for s in inputs], overwrite=overwrite, create_parents=False)
    tensors = check_same_model(inputs)
    with contextlib.ExitStack() as stack:
        for s in inputs:
            stack.enter_context(s.ticket)
        has_init = "init" in init_sel.ticket.checkpoints()
        if init is not None and not has_init:
            raise TicketFileError(f"{init_sel.path}: has no initial weights ('init' checkpoint) to take")
        # a consensus of masks means something without weights (e.g. of imported torch-prune masks): mask-only
        init_weights = init_sel.ticket.weights("init") if has_init else None
        masks = {t.name: combine([s.ticket.mask(s.level, t.name) for s in sources]) for t in tensors}
        first = sources[0].ticket
        model, dataset = first.model, first.dataset
        records = [_source_record(s) for s in sources]
        init_seed = init_sel.ticket.seed
    full_config = {**(config or {}), "model": model, "sources": records,
                   "init": ({"path": str(init_sel.path.resolve()), "checkpoint": "init", "seed": init_seed}
                            if init_weights is not None else None)}
    write_ticket(path, masks, tensors=tensors, model=model, method=method, config=full_config, seed=init_seed,
                 dataset=dataset, init_weights=init_weights, attrs=attrs, overwrite=overwrite)
    return masks
