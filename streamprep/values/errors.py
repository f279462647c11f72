"""Errors raised by streamprep.

Every error streamprep raises on purpose is a :class:`StreamprepError`; anything else is a bug.
The command line prints ``str(error)`` as one line and exits with ``error.exit_code``::

    StreamprepError            exit 1
    ├── ConfigError            exit 2   a bad key or value, in a file or on the command line
    ├── SourceError            exit 3   a video source
    │   ├── SourceOpenError             cannot be opened (missing, corrupt, no video stream, unreachable)
    │   └── SourceLostError             failed after it was opened
    ├── FrameError             exit 3   a frame cannot be processed as configured (its source fails)
    ├── ModelError             exit 4   the model cannot be loaded, or does not fit the spec or decoder
    │   └── ServerUnavailable           its inference server cannot serve it right now (while running)
    └── SinkError              exit 5   results cannot be delivered (file, broker)

Messages never contain secrets: URLs pass through :func:`streamprep.values.redact.redact_url` first. Where they are
shown (the error line, logs) they pass through :func:`streamprep.values.redact.one_line`: secrets masked again,
control characters escaped, cut to a bounded length.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable


class ExitStatus(enum.IntEnum):
    """The command line's exit statuses (each error class below has its own)."""

    OK = 0
    BUG = 1
    CONFIG = 2
    SOURCE = 3
    MODEL = 4
    SINK = 5
    ABORTED = 130  # a second stop signal stopped it at once


# the most serious first: what one status says of a run that had several outcomes
SEVERITY = (
    ExitStatus.ABORTED,
    ExitStatus.BUG,
    ExitStatus.MODEL,
    ExitStatus.SOURCE,
    ExitStatus.SINK,
    ExitStatus.CONFIG,
)


def most_serious(statuses: Iterable[int]) -> int:
    """The one exit status of a run (or of all the workers of one): the most serious of ``statuses``, else 0.
    The single rule for both: a run's own outcomes (:class:`streamprep.ops.daemon.Outcome`) and the workers'
    exit statuses (``--workers``) are combined by it."""
    seen = set(statuses)
    return next((int(s) for s in SEVERITY if s in seen), int(ExitStatus.OK))


class StreamprepError(Exception):
    """Base class of every error streamprep raises on purpose."""

    exit_code: int = ExitStatus.BUG


class ConfigError(StreamprepError):
    """A configuration key or value is invalid; the message names the key."""

    exit_code = ExitStatus.CONFIG


class SourceError(StreamprepError):
    """A video source failed."""

    exit_code = ExitStatus.SOURCE

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"source {source}: {reason}")
        self.source = source
        self.reason = reason


class SourceOpenError(SourceError):
    """A source could not be opened: missing file, corrupt data, no video stream, unreachable."""


class SourceLostError(SourceError):
    """A source failed after it had been opened."""


class FrameError(StreamprepError):
    """A frame cannot be processed as configured (a region of interest outside it, say): its source fails."""

    exit_code = ExitStatus.SOURCE


class ModelError(StreamprepError):
    """A model cannot be loaded or does not fit the preprocessing spec or decoder."""

    exit_code = ExitStatus.MODEL


class ServerUnavailable(ModelError):
    """A remote model's inference server cannot serve it right now: unreachable, timed out, restarting.
    While running this is no frame's fault: live frames are dropped (``unavailable``), files' frames wait."""


class SinkError(StreamprepError):
    """Results cannot be delivered to a sink."""

    exit_code = ExitStatus.SINK


def print_error(message: str) -> None:
    """The command line's error line, ``streamprep: error: MESSAGE`` on stderr: one line whatever the message
    holds (secrets masked, control characters escaped, cut to a bounded length:
    :func:`streamprep.values.redact.one_line`)."""
    import sys

    from streamprep.values.redact import one_line

    print(f"streamprep: error: {one_line(message)}", file=sys.stderr)


def internal_error(exc: BaseException) -> str:
    """One line for an exception streamprep did not expect: named as a bug, with the version, secrets masked."""
    from streamprep.values.redact import one_line
    from streamprep.version import __version__

    first = (str(exc).strip().splitlines() or [""])[0]
    detail = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return f"internal error (a bug in streamprep {__version__}, please report it): {one_line(detail)}"


def frame_failure(exc: BaseException) -> str:
    """The reason a frame failed, in one line: our own errors as they are, anything else as a bug."""
    return str(exc) if isinstance(exc, StreamprepError) else internal_error(exc)
