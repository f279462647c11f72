"""Logging that fits where it goes: journald (priority prefixes, no timestamps), a terminal, or JSON lines."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator

from streamprep.values.redact import redact_text

_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class JournalFormatter(logging.Formatter):
    """``<N>message``: journald reads the syslog priority from the prefix and adds its own timestamp."""

    def format(self, record: logging.LogRecord) -> str:
        priority = _PRIORITY.get(record.levelno, 6)
        return f"<{priority}>{record.name}: {redact_text(super().format(record))}"


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact_text(record.getMessage()),
        }
        if record.exc_info:
            entry["exc"] = redact_text(self.formatException(record.exc_info))
        return json.dumps(entry)


class CallbackHandler(logging.Handler):
    """Hands formatted records to a function (the dashboard's recent-errors panel)."""

    def __init__(self, sink: Callable[[str], None], level: int = logging.WARNING) -> None:
        super().__init__(level)
        self._sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self._sink(redact_text(f"{record.levelname.lower()} {record.getMessage()}"))


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
