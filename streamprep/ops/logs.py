"""Logging that fits where it goes: journald (priority prefixes, no timestamps), a terminal, or JSON lines.

Every format passes each message through :func:`streamprep.values.redact.safe_text` (secrets masked, control
characters escaped: a newline in a URL cannot forge a line, an ANSI escape cannot repaint the terminal) and
cuts it to :data:`MESSAGE_MAX` characters; a traceback keeps its own line breaks.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

from streamprep.values.redact import one_line, safe_text

MESSAGE_MAX = 8000  # characters of one log message

_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


def traceback_text(exc: BaseException) -> str:
    """The traceback as Python writes it, masked and escaped: its frames keep their lines, and each exception's
    message is one line (a newline in it would start a line that looks like a log line of its own)."""

    def lines(te: traceback.TracebackException) -> list[str]:
        out: list[str] = []
        if te.__cause__ is not None:
            out += [*lines(te.__cause__), "\nThe above exception was the direct cause of the following exception:\n\n"]
        elif te.__context__ is not None and not te.__suppress_context__:
            out += [*lines(te.__context__), "\nDuring handling of the above exception, another exception occurred:\n\n"]
        if te.stack:
            out += ["Traceback (most recent call last):\n", *te.stack.format()]
        out += [safe_text(chunk.removesuffix("\n")) + "\n" for chunk in te.format_exception_only()]
        return out

    text = "".join(lines(traceback.TracebackException.from_exception(exc)))
    return safe_text(text, keep_newlines=True).removesuffix("\n")


def message(record: logging.LogRecord) -> str:
    """The record's message as every format shows it: one line, secrets masked, controls escaped, bounded."""
    return one_line(record.getMessage(), MESSAGE_MAX)


class SafeFormatter(logging.Formatter):
    """A formatter whose message is :func:`message` and whose traceback is masked and escaped (its lines kept)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = message(record)
        return super().formatMessage(record)

    def formatException(self, ei: Any) -> str:
        return traceback_text(ei[1]) if ei[1] is not None else safe_text(super().formatException(ei), True)

    def formatStack(self, stack_info: str) -> str:
        return safe_text(super().formatStack(stack_info), keep_newlines=True)


class JournalFormatter(SafeFormatter):
    """``<N>message``: journald reads the syslog priority from the prefix and adds its own timestamp."""

    def format(self, record: logging.LogRecord) -> str:
        priority = _PRIORITY.get(record.levelno, 6)
        return f"<{priority}>{record.name}: {super().format(record)}"


class TextFormatter(SafeFormatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")


class JsonFormatter(SafeFormatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": message(record),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class CallbackHandler(logging.Handler):
    """Hands formatted records to a function (the dashboard's recent-errors panel)."""

    def __init__(self, sink: Callable[[str], None], level: int = logging.WARNING) -> None:
        super().__init__(level)
        self._sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self._sink(f"{record.levelname.lower()} {message(record)}")


@contextlib.contextmanager
def following_stderr() -> Iterator[None]:
    """While the block runs, log lines go to whatever ``sys.stderr`` is now (a live display's proxy, which
    prints them above the display) instead of the stream the handlers were made with."""
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler)]
    before = [h.stream for h in handlers]
    for h in handlers:
        h.setStream(sys.stderr)
    try:
        yield
    finally:
        for h, stream in zip(handlers, before, strict=True):
            h.setStream(stream)


def under_journald() -> bool:
    """True when stderr is connected to the journal (systemd sets JOURNAL_STREAM to its device:inode)."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    if not stream:
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return stream == f"{st.st_dev}:{st.st_ino}"


def setup(fmt: str = "auto", level: str = "info", quiet: bool = False) -> None:
    """Configure the root logger once more (it may be called again after the config is read)."""
    if fmt == "auto":
        fmt = "journal" if under_journald() else "text"
    formatter: logging.Formatter = {
        "journal": JournalFormatter("%(message)s"),
        "json": JsonFormatter(),
    }.get(fmt) or TextFormatter()
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    handler.setLevel(logging.ERROR if quiet else logging.NOTSET)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
