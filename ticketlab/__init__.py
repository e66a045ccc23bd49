"""ticketlab: generate lottery tickets by iterative magnitude pruning and analyse what pruning found.

    import ticketlab
    with ticketlab.open_ticket("runs/quickstart_seed0.h5") as t:
        t.summary()                 # density, accuracy, early-stop iteration per level
        masks = t.masks(3)          # {parameter name: bool array}

Modules: ``store`` (ticket files), ``lottery`` (the IMP loop: ``RunConfig``, ``run_imp``), ``training``, ``pruning``,
``models``, ``datasets``, ``analysis`` (overlap, combine, sparsity, structure, fairness), ``plots``, ``report``,
``io`` (import and export).
"""

from ticketlab._version import __version__
from ticketlab.errors import ConfigError, TicketFileError, TicketlabError
from ticketlab.store import TicketFile, TicketWriter, open_ticket

__all__ = ["__version__", "ConfigError", "TicketFileError", "TicketlabError", "TicketFile", "TicketWriter",
           "open_ticket"]
