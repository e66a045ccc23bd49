"""The ``ticketlab`` command line: a thin layer that parses, calls one library function and formats.

Each sub-command lives in its own module in this package and exposes ``register(subparsers)``, which adds its
parser and sets ``func`` to a callable ``func(args) -> int``. Errors that bad input can cause are
:class:`ticketlab.errors.TicketlabError`; they are printed as one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ticketlab._version import __version__
from ticketlab.errors import TicketlabError

# Sub-command modules, in the order ``ticketlab --help`` lists them.
COMMANDS = ["info"]

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse with the ticketlab prefix on errors (argparse already exits 2 on usage errors)."""


def build_parser() -> argparse.ArgumentParser:
    from ticketlab.store import SCHEMA_VERSION

    parser = _Parser(
        prog="ticketlab",
        description="Generate lottery tickets by iterative magnitude pruning and analyse what pruning found.",
        epilog="Run 'ticketlab COMMAND --help' for the options and an example of each command.",
    )
    parser.add_argument(
        "--version", action="version", version=f"ticketlab {__version__} (ticket-file schema {SCHEMA_VERSION})"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"ticketlab.cli.{name}").register(sub)
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
