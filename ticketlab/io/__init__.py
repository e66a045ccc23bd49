"""Bring tickets in from other tools and take them out again.

Imports (each writes one ticket file atomically and returns an :class:`ImportResult`)::

    from ticketlab.io import import_openlth, import_torch_prune, import_checkpoint
    import_openlth("open_lth_data/lottery_1db0.../", "lenet.h5")        # one file per replicate
    import_torch_prune(["level1.pt", "level2.pt"], "pruned.h5")         # one level per file
    import_checkpoint(["llama-2:4/"], "llama.h5")                      # masks = weight != 0, streamed

Exports::

    from ticketlab.io import export, export_state_dict, apply_ticket
    export("run.h5", "ticket.pt", level=5, format="torch-prune")       # <name>_orig / <name>_mask
    apply_ticket(model, "run.h5", level=5, weights="init")             # prune.custom_from_mask on a module

Every ``.pth``/``.pt`` file is read with ``torch.load(weights_only=True)``: files that need other pickled
objects are refused, never unpickled. Every output is written through :func:`ticketlab.outputs.atomic_output`:
it appears only when complete.

Modules:

- :mod:`~ticketlab.io.kinds` — :data:`IMPORT_KINDS`, the registry of import kinds (each carries its importer);
- :mod:`~ticketlab.io.openlth` — OpenLTH runs onto ticket files; :mod:`~ticketlab.io.openlth_layout` — finding
  OpenLTH's runs, replicates and experiments and parsing its ``logger`` and ``hparams.log``;
- :mod:`~ticketlab.io.torch_prune` — state dicts pruned with ``torch.nn.utils.prune``;
- :mod:`~ticketlab.io.checkpoint` — dense checkpoints with exact zeros, streamed;
- :mod:`~ticketlab.io.common` — the :class:`ImportResult` record and what every importer shares;
- :mod:`~ticketlab.io.export` — tickets out: export formats and weight choices (registries), ``apply_ticket``;
- :mod:`~ticketlab.io.names` — canonical names of pruned/wrapped state dicts;
- :mod:`~ticketlab.io.tensorfiles` — safetensors, safe torch loading, sharded directories.
"""

from ticketlab.io.checkpoint import DEFAULT_ZERO_THRESHOLD, import_checkpoint, scan_tensor
from ticketlab.io.common import ImportResult
from ticketlab.io.export import FORMATS, WEIGHT_CHOICES, apply_ticket, export, export_state_dict
from ticketlab.io.kinds import IMPORT_KINDS, ImportKind
from ticketlab.io.names import canonical_key, normalise_state_dict
from ticketlab.io.openlth import import_openlth
from ticketlab.io.torch_prune import import_torch_prune

__all__ = [
    "IMPORT_KINDS", "ImportKind", "ImportResult", "import_openlth", "import_torch_prune", "import_checkpoint",
    "scan_tensor",
    "DEFAULT_ZERO_THRESHOLD", "FORMATS", "WEIGHT_CHOICES", "export", "export_state_dict", "apply_ticket",
    "canonical_key", "normalise_state_dict",
]
