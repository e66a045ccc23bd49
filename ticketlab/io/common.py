"""What every importer shares: the result record, the output-path check, tensor kinds and natural name order.

Importers write their outputs with :func:`ticketlab.outputs.atomic_outputs` (the project's one copy-and-rename
writer, which holds each output's one-writer lock), after :func:`check_output` has validated each path.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ticketlab import outputs


@dataclass
class ImportResult:
    """What one import wrote.

    Attributes
    ----------
    path : Path
        The ticket file written.
    source : str
        What it was imported from (a path, or several joined by ``", "``).
    kind : str
        The import kind: a name of :data:`ticketlab.io.IMPORT_KINDS`.
    levels : list of dict
        One record per level (and per branch) written: ``level``, ``branch`` (``None`` for the main line),
        ``kept``, ``size``, ``density`` (kept / size over all masked tensors), ``source`` (where it came from).
    tensors : list of dict
        One record per (level, masked tensor) when the importer has something to say about each tensor (the
        checkpoint importer: ``level``, ``layer``, ``shape``, ``dtype``, ``size``, ``zeros`` (exact zeros),
        ``zero_fraction``, ``pattern`` (e.g. ``"2:4 along dim -1"`` or ``None``), ``pruned``, ``kept``).
    notes : list of str
        Things the user should know: files skipped, levels without training, chance zeros, ...
    """

    path: Path
    source: str
    kind: str
    levels: list[dict[str, Any]] = field(default_factory=list)
    tensors: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def check_output(out: str | os.PathLike, overwrite: bool, *, inputs: Iterable[str | os.PathLike | None] = ()
                 ) -> Path:
    """Validate a ticket file to write before any work, by the rule every writer follows
    (:func:`ticketlab.outputs.check_output`): an ``.h5`` file, no directory, none of ``inputs``, an existing
    file only with ``overwrite``; missing parent directories are created. The write itself
    (:func:`~ticketlab.outputs.atomic_outputs`) takes the file's one-writer lock."""
    return outputs.check_output(out, inputs=inputs, overwrite=overwrite, suffixes=outputs.TICKET_SUFFIXES)


def tensor_kind(name: str, shape: tuple[int, ...]) -> str:
    """Guess a tensor's kind from its shape: 2-D → ``"linear"`` (``"other"`` for embeddings), 3-D to 5-D →
    ``"conv"``, anything else ``"other"``. Used where no model is at hand (imports)."""
    if len(shape) == 2:
        return "other" if re.search(r"(embed|wte|wpe|tok_emb|pos_emb)", name) else "linear"
    if 3 <= len(shape) <= 5:
        return "conv"
    return "other"


def natural_key(name: str) -> list[Any]:
    """Sort key that orders numbers numerically: ``layers.2`` before ``layers.10``."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]
