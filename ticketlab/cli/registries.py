"""``ticketlab models``, ``ticketlab presets``, ``ticketlab strategies``: list what can be chosen.

Every listing is read from the registries (:data:`ticketlab.models.MODELS`, :data:`ticketlab.presets.PRESETS`,
:data:`ticketlab.pruning.STRATEGIES`, :data:`ticketlab.lottery.RESET_MODES` and :data:`~ticketlab.lottery.CONTROLS`),
so a new entry is listed the day it is registered.
"""

from __future__ import annotations

import argparse
from typing import Any

from ticketlab.cli import example_epilog
from ticketlab.cli._output import fmt_str, table, to_json

NAME_COLUMNS = [("name", "name", fmt_str), ("description", "description", fmt_str)]


def register(sub: argparse._SubParsersAction) -> None:
    for name, helptext, func, example in [
        ("models", "list the models 'ticketlab train --model' accepts", _models, "ticketlab models"),
        ("presets", "list the presets (papers' hyperparameters) 'ticketlab train --preset' accepts", _presets,
         "ticketlab presets --flags"),
        ("strategies", "list the pruning strategies, reset modes and controls 'ticketlab train' accepts",
         _strategies, "ticketlab strategies"),
    ]:
        p = sub.add_parser(name, help=helptext, description=helptext[0].upper() + helptext[1:] + ".",
                           epilog=example_epilog(example, f"ticketlab {name} --json"))
        p.add_argument("--json", action="store_true", help="print JSON")
        if name == "presets":
            p.add_argument("--flags", action="store_true", help="show each preset as the equivalent flags")
        p.set_defaults(func=func)


def _emit(args, records, columns) -> int:
    print(to_json(records) if args.json else table(records, [(k, h, fmt_str) for k, h in columns]))
    return 0


def described(registry: Any) -> list[dict[str, str]]:
    """``{"name", "description"}`` records of a registry whose entries have a ``description``."""
    return [{"name": name, "description": entry.description} for name, entry in registry.items()]


def _models(args) -> int:
    from ticketlab.models import list_models

    records = [{"name": m.name, "input": "x".join(map(str, m.input_shape)), "description": m.description,
                "reference": m.reference} for m in list_models()]
    return _emit(args, records, [("name", "model"), ("input", "input (C,H,W)"), ("description", "description")])


def _presets(args) -> int:
    from ticketlab.presets import list_presets, preset_as_flags

    records = [{"name": p.name, "description": p.description, "reference": p.reference, "options": dict(p.options)}
               for p in list_presets()]
    if args.flags and not args.json:
        for p in list_presets():
            print(f"{p.name}:\n  ticketlab train {preset_as_flags(p)}\n")
        return 0
    return _emit(args, records, [("name", "preset"), ("description", "description")])


def _strategies(args) -> int:
    from ticketlab.lottery import CONTROLS, RESET_MODES
    from ticketlab.pruning import STRATEGIES

    sections = [("strategies", "pruning strategies (--strategy)", described(STRATEGIES)),
                ("reset_modes", "reset modes (--reset)", described(RESET_MODES)),
                ("controls", "controls (--controls)", described(CONTROLS))]
    if args.json:
        print(to_json({key: records for key, _, records in sections}))
        return 0
    for i, (_, title, records) in enumerate(sections):
        print(("\n" if i else "") + title)
        print(table(records, NAME_COLUMNS))
    return 0
