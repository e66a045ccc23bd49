"""Exceptions that carry a message meant for the user.

Every error that bad input can cause is a :class:`TicketlabError` (or a subclass). The command line catches
exactly these, prints their message on one line and exits with status 2; anything else is a bug and keeps its
traceback.
"""


class TicketlabError(Exception):
    """Bad input or an unusable file; the message says what was wrong and what to do."""


class TicketFileError(TicketlabError):
    """A ticket file that is missing, unreadable, of the wrong kind or version, or lacks what was asked for."""


class ConfigError(TicketlabError, ValueError):
    """An invalid option or an impossible combination of options."""
