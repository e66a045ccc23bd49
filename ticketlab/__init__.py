"""ticketlab: generate lottery tickets by iterative magnitude pruning and analyse what pruning found."""

from ticketlab._version import __version__
from ticketlab.errors import ConfigError, TicketFileError, TicketlabError

__all__ = ["__version__", "ConfigError", "TicketFileError", "TicketlabError"]
