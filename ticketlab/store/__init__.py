"""The ticket file: one HDF5 file per pruning run. This package is the only part of ticketlab that imports h5py.

The schema is documented in ``docs/format.md``; :data:`SCHEMA_VERSION` is written into every file and checked
by every reader. Reading::

    import ticketlab
    with ticketlab.open_ticket("run.h5") as t:
        t.levels                     # [0, 1, 2, ...]
        t.masks(3)                   # {name: bool array}, one dataset read per tensor
        t.mask(3, "fc1.weight")      # one tensor of one level: one dataset read
        t.evaluation(3).per_class_accuracy
        t.summary()                  # one row per level: density, accuracy, early-stop iteration, ...

Writing (used by training, importers and ``intersect``)::

    ticketlab.store.create("run.h5", tensors=..., model="lenet300", dataset=..., method="...", seed=0,
                           config={...}, init_weights=state_dict)
    w = ticketlab.store.TicketWriter("run.h5")
    w.write_level(0, masks, evaluation=ev, weights=trained_state_dict)
    w.set_status("complete")

Choosing levels of several files (``FILE:LEVEL``) and checking that they hold one model::

    sels = ticketlab.store.select(["a.h5:3", "b.h5"], level=None)   # b.h5: its last level
    tensors = ticketlab.store.check_same_model(sels)

Nothing wrong gets in: every read checks what it reads before using or allocating it, and data written since
checksums were introduced carries HDF5's fletcher32 checksum, so a damaged file is a one-line
:class:`~ticketlab.errors.TicketFileError` naming the object, never a traceback or a stale number.

Crash safety: every write is a transaction through :func:`ticketlab.outputs.atomic_output` (copy, change,
flush, rename), so a process killed at any moment leaves either the old file or the new one, never a
half-written level.

Modules:

- :mod:`~ticketlab.store.schema` — format constants, version checks, opening, error translation;
- :mod:`~ticketlab.store.checks` — checked reading of attributes, groups and datasets (types, shapes, sizes);
- :mod:`~ticketlab.store.contents` — what each object of the format must satisfy (tensor table, kept counts
  against mask bits, weights, evaluations against their predictions), checked on every read;
- :mod:`~ticketlab.store.reader` — :func:`open_ticket`, :class:`TicketFile`, :func:`read_state`;
- :mod:`~ticketlab.store.level` — :class:`LevelWriter`: one level's masks, weights and evaluation;
- :mod:`~ticketlab.store.writer` — :func:`create`, :class:`TicketWriter`, :func:`write_ticket`;
- :mod:`~ticketlab.store.copy` — :func:`copy_ticket` (compact copies);
- :mod:`~ticketlab.store.selection` — ``FILE:LEVEL`` specs, level resolution, :func:`check_same_model`;
- :mod:`~ticketlab.store.derive` — :func:`derive_ticket`: a new ticket from masks of others, with provenance.

:func:`pack_mask` / :func:`unpack_mask` (the stored mask encoding) live in :mod:`ticketlab.masks`.
"""

from __future__ import annotations

from ticketlab.masks import pack_mask, unpack_mask
from ticketlab.store.copy import copy_ticket
from ticketlab.store.derive import derive_ticket
from ticketlab.store.level import LevelWriter
from ticketlab.store.reader import TicketFile, open_ticket, read_state
from ticketlab.store.schema import CHECKSUMS_SINCE, FORMAT, SCHEMA_VERSION, STATUSES, DatasetInfo
from ticketlab.store.selection import Selection, check_same_model, parse_spec, resolve_level, select
from ticketlab.store.writer import TicketWriter, create, write_ticket

__all__ = [
    "SCHEMA_VERSION", "FORMAT", "STATUSES", "CHECKSUMS_SINCE", "DatasetInfo",
    "open_ticket", "TicketFile", "read_state",
    "create", "TicketWriter", "LevelWriter", "write_ticket", "copy_ticket", "derive_ticket",
    "Selection", "parse_spec", "select", "resolve_level", "check_same_model",
    "pack_mask", "unpack_mask",
]
