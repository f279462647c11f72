"""The command line: ``streamprep run|check|top|fleet|inspect|preprocess|record|probe|verify``."""

from __future__ import annotations

from collections.abc import Sequence

from streamprep.ops.signals import install_early


def main(argv: Sequence[str] | None = None) -> int:
    """The ``streamprep`` command; its exit status. Stop signals are remembered from the first moment (before
    the commands and their heavy libraries load), so `run` stops cleanly however early one comes."""
    install_early()
    from streamprep.cli.main import main as run  # loaded after the handlers are in place

    return run(argv)
