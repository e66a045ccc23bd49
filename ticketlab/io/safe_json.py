"""JSON from files that may be hostile: bounded size and nesting, no duplicate keys, one-line errors.

``json.loads`` recurses once per nested array or object, so a few hundred kilobytes of ``[[[[...`` end in a
``RecursionError``; a key given twice silently keeps the last value, so two readers of one file can disagree;
and a 5,000-digit number raises ``ValueError`` rather than ``JSONDecodeError``. :func:`load_json` checks the
nesting depth *before* parsing, with a scan that does not recurse (strings are blanked out by a regular
expression, then the brackets that remain are counted with a cumulative sum), refuses duplicate keys, and turns
every failure into :class:`UntrustedJSONError`, whose message fits on one line.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

__all__ = ["UntrustedJSONError", "load_json", "nesting_depth", "short_repr"]

# A JSON string: a quote, then runs of ordinary characters or backslash escapes, then a quote (linear time)
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = np.zeros(256, dtype=np.int8)
_STEP[[ord("["), ord("{")]] = 1
_STEP[[ord("]"), ord("}")]] = -1


class UntrustedJSONError(ValueError):
    """The text is not acceptable JSON; the message says why (one line, no position beyond a byte offset)."""


def nesting_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in ``text`` (0 for a scalar), without parsing it.

    Brackets inside strings do not count. For text that is not valid JSON the result is an upper bound up to the
    first error, which is all a guard in front of a parser needs.
    """
    brackets = _NOT_BRACKET.sub("", _STRING.sub('""', text))
    if not brackets:
        return 0
    steps = _STEP[np.frombuffer(brackets.encode("ascii"), dtype=np.uint8)]
    return int(np.cumsum(steps, dtype=np.int64).max())


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise UntrustedJSONError(f"key {short_repr(key)} appears twice in one object")
        out[key] = value
    return out


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters: names from hostile files can be megabytes long."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_json(data: bytes | str, *, max_depth: int) -> Any:
    """Parse JSON that may be hostile.

    Parameters
    ----------
    data : bytes or str
        UTF-8 bytes or text. The caller bounds its length (it has read it).
    max_depth : int
        Deepest nesting of arrays and objects allowed (a safetensors header needs 3).

    Raises
    ------
    UntrustedJSONError
        Not UTF-8, not JSON, nested deeper than ``max_depth``, a key repeated within one object, or a number
        too long to convert.
    """
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise UntrustedJSONError(f"not UTF-8 text (byte {err.start})") from None
    depth = nesting_depth(data)
    if depth > max_depth:
        raise UntrustedJSONError(f"nested {depth} levels deep; at most {max_depth} are expected")
    try:
        return json.loads(data, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as err:
        raise UntrustedJSONError(f"not JSON: {err.msg} at character {err.pos}") from None
    except UntrustedJSONError:
        raise
    except (ValueError, RecursionError) as err:  # e.g. a number of more than 4,300 digits
        raise UntrustedJSONError(f"not usable JSON: {str(err).splitlines()[0][:120]}") from None
