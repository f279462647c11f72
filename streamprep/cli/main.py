"""Command line: ``streamprep run|check|top|fleet|inspect|preprocess|record|probe|verify``.

Maps every StreamprepError to one line and an exit code; tracebacks only with ``--debug``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from streamprep.ops import logs
from streamprep.ops.signals import forget_early, install_early
from streamprep.values.errors import StreamprepError, internal_error, print_error

if TYPE_CHECKING:
    pass

from streamprep.cli._args import _parser
from streamprep.cli._run import _check, _run
from streamprep.cli._tools import _inspect, _preprocess, _record, _top

log = logging.getLogger("streamprep")


def main(argv: Sequence[str] | None = None) -> int:
    # first of all (``python -m streamprep`` did it even before importing this module): a stop signal from
    # now on is remembered, and `run` stops cleanly on it however early it came
    signals = install_early()
    forget_early()  # handed over: a later main() in this process installs its own
    words = list(argv if argv is not None else sys.argv[1:])
    debug = "--debug" in words
    logs.setup("auto", "debug" if debug else "info")
    try:
        args = _parser().parse_args(words)
    except StreamprepError as exc:
        signals.release()
        return _error_line(exc, debug)
    if args.command != "run":
        signals.release()  # the other commands keep Python's own handling (Ctrl-C ends `top`)
    args.argv = words  # `run --workers N` starts its workers with it
    args.signals = signals
    code = _dispatch(args, debug)
    if args.command == "run":
        from streamprep.flow.threads import exit_if_threads_linger

        exit_if_threads_linger(code)
    return code


def _error_line(exc: StreamprepError, debug: bool) -> int:
    if debug:
        log.exception("failed")
    print_error(str(exc))
    return exc.exit_code


def _dispatch(args: argparse.Namespace, debug: bool) -> int:
    """Run the command; errors become one line and an exit code."""
    try:
        if args.command == "run":
            return _run(args, args.signals)
        if args.command == "preprocess":
            return _preprocess(args)
        if args.command == "record":
            return _record(args)
        if args.command == "check":
            return _check(args)
        if args.command == "top":
            return _top(args)
        if args.command == "probe":
            from streamprep.tools import probe

            return probe.main(args)
        if args.command == "fleet":
            from streamprep.ops import fleet

            return fleet.main(args)
        if args.command == "verify":
            from streamprep.tools import verify

            return verify.main(args)
        return _inspect(args)
    except StreamprepError as exc:
        return _error_line(exc, debug)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (`streamprep inspect | head`): nothing more to say
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:
        if debug:
            log.exception("failed")
        print_error(internal_error(exc))
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
