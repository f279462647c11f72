"""The command line: ``streamprep run|check|top|fleet|inspect|preprocess|record|probe|verify``."""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """The ``streamprep`` command; its exit status. The commands load only when called, so ``--help`` is quick."""
    from streamprep.cli.main import main as run

    return run(argv)
