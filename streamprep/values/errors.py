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

Messages never contain secrets: URLs pass through :func:`streamprep.values.redact.redact_url` first.
"""

from __future__ import annotations


class StreamprepError(Exception):
    """Base class of every error streamprep raises on purpose."""

    exit_code = 1


class ConfigError(StreamprepError):
    """A configuration key or value is invalid; the message names the key."""

    exit_code = 2


class SourceError(StreamprepError):
    """A video source failed."""

    exit_code = 3

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

    exit_code = 3


class ModelError(StreamprepError):
    """A model cannot be loaded or does not fit the preprocessing spec or decoder."""

    exit_code = 4


class ServerUnavailable(ModelError):
    """A remote model's inference server cannot serve it right now: unreachable, timed out, restarting.
    While running this is no frame's fault: live frames are dropped (``unavailable``), files' frames wait."""


class SinkError(StreamprepError):
    """Results cannot be delivered to a sink."""

    exit_code = 5


def internal_error(exc: BaseException) -> str:
    """One line for an exception streamprep did not expect: named as a bug, with the version, secrets masked."""
    from streamprep.values.redact import redact_text
    from streamprep.version import __version__

    first = (str(exc).strip().splitlines() or [""])[0]
    detail = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return f"internal error (a bug in streamprep {__version__}, please report it): {redact_text(detail)}"


def frame_failure(exc: BaseException) -> str:
    """The reason a frame failed, in one line: our own errors as they are, anything else as a bug."""
    return str(exc) if isinstance(exc, StreamprepError) else internal_error(exc)
