"""``ticketlab models``, ``ticketlab presets``, ``ticketlab strategies``: list what can be chosen."""

from __future__ import annotations

import argparse

from ticketlab.cli import example_epilog
from ticketlab.cli._output import fmt_str, table, to_json


def register(sub: argparse._SubParsersAction) -> None:
    for name, helptext, func, example in [
        ("models", "list the models 'ticketlab train --model' accepts", _models, "ticketlab models"),
        ("presets", "list the presets (papers' hyperparameters) 'ticketlab train --preset' accepts", _presets,
         "ticketlab presets --flags"),
        ("strategies", "list the pruning strategies and reset modes 'ticketlab train' accepts", _strategies,
         "ticketlab strategies"),
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
    from ticketlab.imp import CONTROLS, RESET_MODES
    from ticketlab.pruning import get_strategy, list_strategies

    strategies = [{"name": n, "description": get_strategy(n).description} for n in list_strategies()]
    if args.json:
        print(to_json({"strategies": strategies,
                       "reset_modes": [{"name": k, "description": v} for k, v in RESET_MODES.items()],
                       "controls": [{"name": k, "description": v} for k, v in CONTROLS.items()]}))
        return 0
    print("pruning strategies (--strategy)")
    print(table(strategies, [("name", "name", fmt_str), ("description", "description", fmt_str)]))
    print("\nreset modes (--reset)")
    print(table([{"name": k, "description": v} for k, v in RESET_MODES.items()],
                [("name", "name", fmt_str), ("description", "description", fmt_str)]))
    print("\ncontrols (--controls)")
    print(table([{"name": k, "description": v} for k, v in CONTROLS.items()],
                [("name", "name", fmt_str), ("description", "description", fmt_str)]))
    return 0
