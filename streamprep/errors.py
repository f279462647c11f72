"""Errors raised by streamprep.

Every error streamprep raises on purpose is a :class:`StreamprepError`; anything else is a bug.
The command line prints ``str(error)`` as one line and exits with ``error.exit_code``::

    StreamprepError            exit 1
    ├── ConfigError            exit 2   a bad key or value, in a file or on the command line
    ├── SourceError            exit 3   a video source
    │   ├── SourceOpenError             cannot be opened (missing, corrupt, no video stream, unreachable)
    │   └── SourceLostError             failed after it was opened
    ├── ModelError             exit 4   the model cannot be loaded, or does not fit the spec or decoder
    └── SinkError              exit 5   results cannot be delivered (file, broker)

Messages never contain secrets: URLs pass through :func:`streamprep.redact.redact_url` first.
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


class ModelError(StreamprepError):
    """A model cannot be loaded or does not fit the preprocessing spec or decoder."""

    exit_code = 4


class SinkError(StreamprepError):
    """Results cannot be delivered to a sink."""

    exit_code = 5
