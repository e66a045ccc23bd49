"""The import kinds: one :class:`~ticketlab.registry.Registry` entry per source format, carrying its importer.

``ticketlab import KIND ...`` looks the kind up here and calls :meth:`ImportKind.run`; ``ticketlab import --help``
lists the entries. A new source format is one importer function (``importer(src, out, *, overwrite=False,
**options)`` returning one :class:`~ticketlab.io.common.ImportResult` or a list of them) and one ``register``
call below; the command line names the kind's options after the importer's keyword arguments.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from typing import Any, Callable

from ticketlab.io.checkpoint import import_checkpoint
from ticketlab.io.common import ImportResult
from ticketlab.io.openlth import import_openlth
from ticketlab.io.torch_prune import import_torch_prune
from ticketlab.registry import Registry

__all__ = ["ImportKind", "IMPORT_KINDS"]


@dataclass(frozen=True)
class ImportKind:
    """One source format of ``ticketlab import``.

    Attributes
    ----------
    name : str
        The kind as typed: ``ticketlab import NAME``.
    reads : str
        What it makes ticket files from, for the command's one-line help ("OpenLTH runs").
    summary : str
        One line on the source it expects (the kind's line in ``ticketlab import --help``).
    importer : callable
        ``importer(src, out, *, overwrite=False, **options)`` → :class:`ImportResult` or a list of them.
    """

    name: str
    reads: str
    summary: str
    importer: Callable[..., ImportResult | list[ImportResult]]

    def options(self) -> tuple[str, ...]:
        """The importer's keyword-only arguments (``overwrite`` included)."""
        params = inspect.signature(self.importer).parameters.values()
        return tuple(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)

    def run(self, src: Any, out: str | os.PathLike, **options: Any) -> list[ImportResult]:
        """Import ``src`` into ``out``; always a list of results (one per file written)."""
        result = self.importer(src, out, **options)
        return result if isinstance(result, list) else [result]


IMPORT_KINDS: Registry[ImportKind] = Registry("import kind")

for _kind in [
    ImportKind("openlth", "OpenLTH runs",
               "an OpenLTH results directory (lottery_<hash>/replicate_<r>/level_<L>/...)", import_openlth),
    ImportKind("torch-prune", "torch.nn.utils.prune state dicts",
               "state dicts of models pruned with torch.nn.utils.prune (one file per level)", import_torch_prune),
    ImportKind("checkpoint", "checkpoints with exact zeros",
               "dense checkpoints whose pruned weights are exact zeros (.pt, .safetensors, HF dirs)",
               import_checkpoint),
]:
    IMPORT_KINDS.register(_kind.name, _kind)
