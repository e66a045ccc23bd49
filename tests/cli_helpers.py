"""Running the command line in-process from tests: ``cli(capsys, "overlap", "a.h5", "b.h5")``."""

from __future__ import annotations

from ticketlab.cli import main


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    """Run ``ticketlab ARGV`` in this process; return (exit code, stdout, stderr)."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err
