"""Class-subset tasks: a dataset restricted to some of its classes (``ticketlab train --classes 0-4``).

A task keeps the training, validation and test examples of the chosen classes only, and **renumbers** their labels
0 .. k−1 in ascending order of the original class ids (digits 5–9 of MNIST become labels 0–4), so the model's
output layer has one unit per chosen class. A ticket found on one subset of k classes therefore has the shape of
a ticket for any other subset of k classes of the same data: ``ticketlab train --mask FILE --classes 5-9``
retrains a ticket found on digits 0–4. The class names are the original ones (``"5"`` .. ``"9"``), the task is
named ``mnist[5-9]`` in the ticket file's dataset record, and the original ids are the run configuration's
``classes``.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np
import torch

from ticketlab.errors import ConfigError

__all__ = ["parse_classes", "classes_text", "task_name", "check_classes", "select_classes"]


def parse_classes(value: Any) -> tuple[int, ...]:
    """Class ids from ``"0-4"``, ``"0,2,4"``, ``"0-2,7,8-9"`` or a sequence of ints, sorted; ``()`` for all classes.

    ``None``, ``""``, ``"all"`` and ``"none"`` mean every class. Refuses negative ids, ids listed twice, reversed
    ranges and a single class (a classifier needs two).
    """
    if value is None:
        return ()
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("", "all", "none"):
            return ()
        ids: list[int] = []
        for part in (p.strip() for p in text.split(",")):
            lo, dash, hi = part.partition("-")
            try:
                a, b = (int(lo), int(hi)) if dash else (int(part), int(part))
            except ValueError:
                raise ConfigError(f"classes must be class ids such as 0-4 or 0,2,4; got {value!r}") from None
            if b < a:
                raise ConfigError(f"classes: range {part!r} runs backwards; write it {b}-{a}")
            ids.extend(range(a, b + 1))
    else:
        try:
            ids = [_as_id(v) for v in value]
        except TypeError:
            raise ConfigError(f"classes must be class ids such as 0-4 or 0,2,4; got {value!r}") from None
    if any(i < 0 for i in ids):
        raise ConfigError(f"classes must be ids >= 0; got {min(ids)}")
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise ConfigError(f"classes lists {', '.join(map(str, twice))} twice")
    if len(ids) == 1:
        raise ConfigError(f"classes must name at least two classes (a classifier needs two); got only {ids[0]}")
    return tuple(sorted(ids))


def _as_id(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError(v)
    return int(v)


def classes_text(classes: Iterable[int]) -> str:
    """Compact text of sorted class ids: ``(0, 1, 2, 3, 4)`` → ``"0-4"``, ``(0, 2, 4)`` → ``"0,2,4"``."""
    ids = sorted(classes)
    parts, start = [], None
    for i, c in enumerate(ids):
        if start is None:
            start = c
        if i + 1 == len(ids) or ids[i + 1] != c + 1:
            parts.append(str(c) if c == start else f"{start}-{c}" if c > start + 1 else f"{start},{c}")
            start = None
    return ",".join(parts)


def task_name(dataset: str, classes: Sequence[int]) -> str:
    """``"mnist"`` for every class, ``"mnist[0-4]"`` for a subset: how the ticket file's dataset record names it."""
    return f"{dataset}[{classes_text(classes)}]" if classes else dataset


def check_classes(classes: Sequence[int], num_classes: int, dataset: str) -> None:
    """Refuse class ids outside ``0 .. num_classes − 1`` of ``dataset``, and a subset that is every class."""
    bad = [c for c in classes if c >= num_classes]
    if bad:
        raise ConfigError(f"dataset {dataset!r} has classes 0-{num_classes - 1}; classes {classes_text(bad)} do not "
                          "exist")
    if len(classes) == num_classes:
        raise ConfigError(f"classes names every class of {dataset!r}; leave it out (or use 'none') to train on all")


def select_classes(x: torch.Tensor, y: torch.Tensor, classes: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The examples of ``classes`` (sorted class ids), in their original order, with labels renumbered 0 .. k−1."""
    ids = torch.as_tensor(list(classes), dtype=y.dtype)
    size = max(int(y.max()) if y.numel() else 0, int(ids.max())) + 1
    lookup = torch.full((size,), -1, dtype=y.dtype)
    lookup[ids] = torch.arange(len(ids), dtype=y.dtype)   # original id -> new label
    idx = torch.nonzero(torch.isin(y, ids)).reshape(-1)
    return x[idx], lookup[y[idx]]
