"""Run identity: what a ticket file's run is (method, reset mode, strategy, controls, seed) and how to name it.

The identity of a run made by ticketlab is read from its stored run configuration (``/config``: ``strategy``,
``rate``, ``reset``, ``controls``, ...) and its seed from the provenance; files without one (imports, hand-made
files) fall back to the method description they record (``TicketFile.method``), split at its commas. Either
way an identity is a tuple of *parts* (``"layer_magnitude"``, ``"50%/level"``, ``"reset rewind-init"``), and
runs shown together are named by the parts they do not share (:func:`method_labels`)::

    with open_ticket("rewind_s0.h5") as t:
        run_identity(t)      # RunIdentity(parts=('layer_magnitude', '50%/level', 'reset rewind-init'), ...)
    run_infos(tickets)       # labels such as "rewind-init, seed 0" that tell the files apart
    populations(tickets)     # [Population("rewind-init", (0, 1)), Population("finetune", (2, 3))]

A *population* is the runs of one method: the same identity parts (strategy, rates, reset mode, ...), the same
control branches, model and dataset (task), different seeds. Commands that compute a statistic over a population
of runs (``ticketlab fairness``, ``plot class-drops``/``pies``/``intensification``) group their files with
:func:`populations` and never pool two methods into one statistic.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from ticketlab.errors import TicketFileError
from ticketlab.store import TicketFile

#: Run-config keys that define a method (the rest: model, data, training length, seeds, ... do not), in the order
#: they appear in a label, each with how its value is written.
METHOD_KEYS = {
    "strategy": lambda v: str(v),
    "norm": lambda v: f"{v} norm",
    "rate": lambda v: f"{float(v):.0%}/level",
    "layer_rates": lambda v: " ".join(f"{p} {float(r):.0%}" for p, r in v),
    "output_rate": lambda v: f"output {float(v):.0%}",
    "exclude": lambda v: "exclude " + ",".join(map(str, v)),
    "reset": lambda v: f"reset {v}",
    # a run started from a given ticket (train --mask) is never one of IMP from dense: it is named by what its mask
    # is (the level, method and task of the source: runs from the same level of one method's seeds are one
    # population), or where no description was recorded by the mask's file and level
    "start": lambda v: "from " + str(v.get("source") or f"mask {v['mask']}") + (
        " (fresh init)" if v.get("init") == "fresh" else ""),
}
_RESET = "reset "
_CONTROLS = "controls "


def _is_run_config(config: Any) -> bool:
    return isinstance(config, Mapping) and "strategy" in config and "reset" in config


@dataclass(frozen=True)
class RunIdentity:
    """What a run is, as far as telling runs apart goes.

    Attributes
    ----------
    description : str
        The method as recorded in the file (``TicketFile.method``), e.g. ``"IMP layer_magnitude 50%/level,
        reset rewind-init, controls reinit"``.
    parts : tuple of str
        What defines the method, control branches excluded: from the run configuration (``"layer_magnitude"``,
        ``"50%/level"``, ``"reset rewind-init"``), or the description's comma-separated parts.
    reset : str or None
        The reset mode (``rewind-init``, ``rewind:500``, ``lr-rewind``, ...), None when not known.
    strategy : str or None
        The pruning strategy, None when not known.
    controls : tuple of str
        The control branches the run trains beside its main line (``reinit``, ``shuffle``, ``random``).
    seed : int or None
        The run's seed (None for imports).
    """

    description: str
    parts: tuple[str, ...]
    reset: str | None = None
    strategy: str | None = None
    controls: tuple[str, ...] = ()
    seed: int | None = field(default=None, compare=False)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], description: str = "", seed: int | None = None) -> "RunIdentity":
        """The identity of a ticketlab run from its stored configuration (a ``RunConfig`` as a dict)."""
        parts = tuple(fmt(config[key]) for key, fmt in METHOD_KEYS.items()
                      if config.get(key) not in (None, "", [], ()))
        return cls(description, parts, str(config["reset"]), str(config["strategy"]),
                   tuple(config.get("controls") or ()), seed)

    @classmethod
    def from_description(cls, description: str, seed: int | None = None) -> "RunIdentity":
        """The identity of a file without a run configuration, from its method description."""
        parts, controls, reset = [], (), None
        for p in (p.strip() for p in (description or "").split(",")):
            if p.startswith(_CONTROLS):
                controls = tuple(c for c in p[len(_CONTROLS):].split("+") if c)
            elif p:
                parts.append(p)
                if p.startswith(_RESET):
                    reset = p[len(_RESET):]
        return cls(description or "", tuple(parts), reset, None, controls, seed)


def run_identity(ticket: TicketFile) -> RunIdentity:
    """The identity of an open ticket file: from its run configuration when it has one, else its description."""
    config = ticket.config
    if _is_run_config(config):
        try:
            return RunIdentity.from_config(config, ticket.method, ticket.seed)
        except (TypeError, ValueError, KeyError, AttributeError) as err:  # a hand-edited or damaged /config
            raise TicketFileError(f"{ticket.path}: config: a value has the wrong type or form ({err}); "
                                  "the file's run configuration is damaged") from None
    return RunIdentity.from_description(ticket.method, ticket.seed)


def _short(part: str) -> str:
    return part[len(_RESET):] if part.startswith(_RESET) else part


def method_labels(methods: Iterable[str | RunIdentity]) -> dict[Any, str]:
    """Short names that tell methods apart, for legends.

    Every part that all the methods share is dropped; ``"reset X"`` is shortened to ``X``; control branches are
    not part of a method (they are plotted as lines of their own).

    Parameters
    ----------
    methods : iterable of str or RunIdentity
        The identities of the runs to be shown together, or their method descriptions (``TicketFile.method``,
        e.g. ``"IMP layer_magnitude 20%/level, reset rewind-init, controls reinit"``).

    Returns
    -------
    dict
        ``{method: short name}`` keyed as given, e.g. ``{"IMP ..., reset rewind-init": "rewind-init",
        "IMP ..., reset lr-rewind": "lr-rewind"}``. With one method (or parts all shared) the name is its reset
        mode when it has one, else all its parts.
    """
    methods = list(dict.fromkeys(methods))
    ids = {m: (m if isinstance(m, RunIdentity) else RunIdentity.from_description(m)) for m in methods}
    shared = set.intersection(*(set(i.parts) for i in ids.values())) if methods else set()
    out = {}
    for m, ident in ids.items():
        own = [p for p in ident.parts if p not in shared]
        if not own:
            resets = [p for p in ident.parts if p.startswith(_RESET)]
            own = resets[-1:] if resets else list(ident.parts)
        out[m] = ", ".join(_short(p) for p in own) or (ident.description or "unknown method")
    return out


@dataclass
class RunInfo:
    """The identity of one ticket file, as the frames label it."""

    file: str
    model: str
    dataset: str | None
    method: str             # short name (see method_labels)
    method_description: str
    seed: int | None
    run: str                # unique label: "method, seed s"
    identity: RunIdentity | None = None

    def columns(self) -> dict[str, Any]:
        return {"file": self.file, "model": self.model, "method": self.method, "seed": self.seed,
                "run": self.run}


def run_infos(tickets: Sequence[TicketFile]) -> list[RunInfo]:
    """Identity of each ticket file: short method names across all of them and unique run labels.

    The run label is ``"<method>, seed <s>"``, prefixed with the model when the files hold several models; the
    method is followed by ``" on <dataset>"`` when files of one model record several datasets (class subsets
    included); when two files would still get one label, the file name is added.
    """
    identities = [run_identity(t) for t in tickets]
    labels = method_labels(identities)
    models = {t.model for t in tickets}
    datasets: dict[str, set[str]] = {}  # per model, the datasets recorded
    for t in tickets:
        if t.dataset is not None:
            datasets.setdefault(t.model, set()).add(t.dataset.name)
    out = []
    for t, ident in zip(tickets, identities):
        method = labels[ident]
        ds = t.dataset
        if ds is not None and len(datasets[t.model]) > 1:  # one method on two tasks (mnist[0-4], mnist[5-9])
            method = f"{method} on {ds.name}"
        run = method + (f", seed {ident.seed}" if ident.seed is not None else "")
        if len(models) > 1:
            run = f"{t.model}: {run}"
        out.append(RunInfo(str(t.path), t.model, None if ds is None else ds.name, method, ident.description,
                           ident.seed, run, ident))
    counts = pd.Series([r.run for r in out]).value_counts()
    for r in out:
        if counts[r.run] > 1:
            r.run = f"{r.run} ({os.path.basename(r.file)})"
    counts = pd.Series([r.run for r in out]).value_counts()
    for r in out:  # same file name twice (different directories): the full path
        if counts[r.run] > 1:
            r.run = f"{r.run} [{r.file}]"
    return out


def population_key(ticket: TicketFile) -> tuple[Any, ...]:
    """What runs of one population share: model, dataset (with its class subset), method parts and controls."""
    ident = run_identity(ticket)
    ds = ticket.dataset
    return (ticket.model, None if ds is None else ds.name, ident.parts, ident.controls)


@dataclass(frozen=True)
class Population:
    """Runs of one method (same :func:`population_key`), by their positions in the list given to :func:`populations`.

    Attributes
    ----------
    name : str
        A short name that tells the populations given together apart (method, then model, dataset and controls
        where they differ).
    members : tuple of int
        Positions of the runs in the list of tickets.
    key : tuple
        The :func:`population_key` the members share.
    """

    name: str
    members: tuple[int, ...]
    key: tuple[Any, ...] = field(compare=False)


def populations(tickets: Sequence[TicketFile]) -> list[Population]:
    """Group ticket files into populations (runs of one method, model and dataset), in order of first appearance."""
    keys = [population_key(t) for t in tickets]
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    firsts = {key: run_identity(tickets[idx[0]]) for key, idx in groups.items()}
    labels = method_labels(list(firsts.values()))
    differ = [len({k[j] for k in groups}) > 1 for j in range(4)]  # model, dataset, parts, controls
    # controls are named only where the method names alone do not tell the populations apart
    named_controls = differ[3] and len({labels[i] for i in firsts.values()}) < len(groups)
    out = []
    for key, idx in groups.items():
        model, dataset, _, controls = key
        name = labels[firsts[key]]
        if named_controls:
            name += ", controls " + ("+".join(controls) if controls else "none")
        if differ[1]:
            name += f" on {dataset or 'unknown data'}"
        if differ[0]:
            name = f"{model}: {name}"
        out.append(Population(name, tuple(idx), key))
    if len({p.name for p in out}) < len(out):  # identities that the labels do not tell apart: number them
        out = [Population(f"{p.name} ({i + 1})", p.members, p.key) for i, p in enumerate(out)]
    return out


def populations_text(pops: Sequence[Population], tickets: Sequence[TicketFile]) -> str:
    """``"rewind-init (2 runs: a.h5, b.h5); finetune (1 run: c.h5)"``, for messages."""
    def files(p: Population) -> str:
        names = [os.path.basename(str(tickets[i].path)) for i in p.members]
        return ", ".join(names[:3]) + (f", ... ({len(names) - 3} more)" if len(names) > 3 else "")

    return "; ".join(f"{p.name} ({len(p.members)} run{'s' if len(p.members) != 1 else ''}: {files(p)})"
                     for p in pops)


__all__ = ["METHOD_KEYS", "RunIdentity", "run_identity", "method_labels", "RunInfo", "run_infos",
           "population_key", "Population", "populations", "populations_text"]
