"""One registry type behind every "choose by name" in ticketlab.

Models, datasets, pruning strategies, reset modes, controls, optimizers, schedules, presets, overlap metrics,
import kinds and plot kinds are each a :class:`Registry`: entries are registered once (usually with the
decorator form next to their definition), looked up with :meth:`Registry.get`, which raises a one-line
:class:`~ticketlab.errors.ConfigError` naming the valid choices and the closest match, and listed with
:meth:`Registry.names` — which is what help texts and the registry-iterating tests use, so a new entry appears
in ``--help`` and is tested the day it is added.

>>> colours = Registry("colour")
>>> @colours.register("red")
... def red(): return "#f00"
>>> colours.get("red")()
'#f00'
>>> colours.get("rde")
Traceback (most recent call last):
...
ticketlab.errors.ConfigError: unknown colour 'rde'; choose one of: red (did you mean 'red'?)
"""

from __future__ import annotations

import difflib
from typing import Any, Callable, Generic, Iterator, TypeVar

from ticketlab.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind, in registration order.

    Parameters
    ----------
    kind : str
        What an entry is, for messages: ``"pruning strategy"`` gives "unknown pruning strategy 'x'; ...".
    normalise : callable, optional
        Applied to names on registration and lookup (e.g. ``str.lower`` for case-insensitive names).
    """

    def __init__(self, kind: str, *, normalise: Callable[[str], str] | None = None) -> None:
        self.kind = kind
        self._normalise = normalise or (lambda s: s)
        self._entries: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, entry: T | None = None, *, aliases: tuple[str, ...] = ()) -> Any:
        """Register ``entry`` under ``name``; without ``entry``, return a decorator that registers its argument.

        A name (or alias) registered twice is a programming error and raises ``ValueError``.
        """
        if entry is None:
            def decorator(obj: T) -> T:
                self.register(name, obj, aliases=aliases)
                return obj
            return decorator
        key = self._normalise(name)
        for k in (key, *map(self._normalise, aliases)):
            if k in self._entries or k in self._aliases:
                raise ValueError(f"{self.kind} {k!r} is already registered")
        self._entries[key] = entry
        for alias in aliases:
            self._aliases[self._normalise(alias)] = key
        return entry

    def canonical(self, name: str) -> str:
        """The registered name for ``name`` (resolving aliases); raises :class:`ConfigError` if unknown."""
        if not isinstance(name, str):
            raise ConfigError(f"{self.kind} must be a name (a string), got {name!r}")
        key = self._normalise(name)
        if key in self._entries:
            return key
        if key in self._aliases:
            return self._aliases[key]
        raise ConfigError(self.unknown_message(name))

    def get(self, name: str) -> T:
        """The entry registered as ``name``; a :class:`ConfigError` naming the choices if there is none."""
        return self._entries[self.canonical(name)]

    def unknown_message(self, name: str) -> str:
        """"unknown KIND 'name'; choose one of: a, b, c (did you mean 'b'?)"."""
        choices = list(self._entries) + list(self._aliases)
        close = difflib.get_close_matches(self._normalise(str(name)), choices, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown {self.kind} {name!r}; choose one of: {self.choices()}{hint}"

    def names(self) -> list[str]:
        """Registered names (aliases excluded), in registration order."""
        return list(self._entries)

    def choices(self, sep: str = ", ") -> str:
        """The names joined for a help text or an error message."""
        return sep.join(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return list(self._entries.items())

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = self._normalise(name)
        return key in self._entries or key in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {self.choices()})"
