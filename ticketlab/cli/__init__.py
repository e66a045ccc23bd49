"""The ``ticketlab`` command line: a thin layer that parses, calls one library function and formats.

Each sub-command lives in a module of this package (listed in :data:`COMMANDS`) that exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a callable ``func(args) -> int``. Errors
that bad input can cause are :class:`ticketlab.errors.TicketlabError`; they are printed as one line and exit
with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ticketlab._version import __version__
from ticketlab.errors import TicketlabError
from ticketlab.registry import Registry

#: The sub-commands, in the order ``ticketlab --help`` lists them: command → the module of this package that
#: registers it (one module may register several, e.g. the listing commands of ``registries``).
COMMANDS: Registry[str] = Registry("command")
for _name, _module in [
    ("train", "train"), ("info", "info"), ("models", "registries"), ("presets", "registries"), ("study", "study"),
    ("strategies", "registries"), ("data", "data"), ("overlap", "overlap"), ("intersect", "intersect"),
    ("sparsity", "sparsity"), ("structure", "structure"), ("fairness", "fairness"), ("plot", "plot"),
    ("report", "report"), ("import", "import_"), ("export", "export"),
]:
    COMMANDS.register(_name, _module)

EXIT_USAGE = 2


class HelpFormatter(argparse.HelpFormatter):
    """Wraps paragraphs like argparse does, but keeps indented lines (examples) as they are."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        out = []
        for block in text.split("\n\n"):
            if block.startswith("examples:") or block.startswith("  "):
                out.append("\n".join(indent + line for line in block.splitlines()))
            else:
                out.append(super()._fill_text(block, width, indent))
        return "\n\n".join(out)


class _SubParser(argparse.ArgumentParser):
    """Sub-command parsers share the help formatter."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    from ticketlab.store import SCHEMA_VERSION

    parser = argparse.ArgumentParser(
        formatter_class=HelpFormatter,
        prog="ticketlab",
        description="Generate lottery tickets by iterative magnitude pruning and analyse what pruning found.",
        epilog="Run 'ticketlab COMMAND --help' for the options and an example of each command.",
    )
    parser.add_argument(
        "--version", action="version", version=f"ticketlab {__version__} (ticket-file schema {SCHEMA_VERSION})"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_SubParser)
    for module in dict.fromkeys(module for _, module in COMMANDS.items()):
        importlib.import_module(f"ticketlab.cli.{module}").register(sub)
    return parser


def example_epilog(*lines: str) -> str:
    """Format the 'examples' section of a sub-command's ``--help``."""
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except TicketlabError as err:
        print(f"ticketlab {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"ticketlab {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `ticketlab info --json f.h5 | head`
        return 0
