"""What reaches a log, the dashboard or the error line is one line per message: secrets masked, controls escaped."""

from __future__ import annotations

import json
import logging
import sys

import pytest
from rich.console import Console

from streamprep.ops.dashboard import render
from streamprep.ops.logs import CallbackHandler, JournalFormatter, JsonFormatter, TextFormatter
from streamprep.values.metrics import Snapshot
from streamprep.values.redact import LINE_MAX, one_line, printable

URL = "rtsp://admin:hunter2@cam/a\nERROR forged\x1b[2J\x9b31m"
ESCAPED = "rtsp://admin:***@cam/a\\nERROR forged\\x1b[2J\\x9b31m"


def record(msg: str, exc: bool = False) -> logging.LogRecord:
    info = None
    if exc:
        try:
            raise ValueError(f"bad {URL}")
        except ValueError:
            info = sys.exc_info()
    return logging.LogRecord("streamprep.x", logging.WARNING, __file__, 1, "source %s: failed", (msg,), info)


def no_raw_controls(text: str, newlines: bool = False) -> bool:
    return not [c for c in text if (c != "\n" or not newlines) and (ord(c) < 32 or 127 <= ord(c) < 160)]


@pytest.mark.parametrize("formatter", [TextFormatter(), JournalFormatter("%(message)s"), JsonFormatter()])
def test_every_log_format_escapes_control_characters_and_masks_secrets(formatter: logging.Formatter) -> None:
    line = formatter.format(record(URL))
    assert "\n" not in line and no_raw_controls(line) and "hunter2" not in line
    shown = json.loads(line)["msg"] if isinstance(formatter, JsonFormatter) else line
    assert shown.endswith(f"source {ESCAPED}: failed")
    with_traceback = formatter.format(record(URL, exc=True))
    assert no_raw_controls(with_traceback, newlines=True) and "hunter2" not in with_traceback
    assert "Traceback" in with_traceback and f"ValueError: bad {ESCAPED}" in with_traceback.replace("\\\\", "\\")


def test_a_huge_log_message_is_cut() -> None:
    line = TextFormatter().format(record("x" * 1_000_000))
    assert len(line) < 8100 and line.endswith("more characters)")


def test_the_dashboard_shows_control_characters_escaped() -> None:
    got: list[str] = []
    CallbackHandler(got.append).handle(record(URL))
    assert got == [f"warning source {ESCAPED}: failed"]
    snap = Snapshot(0.0, (), (), 0, 0, 0, 0, 0.0, 0.0, 0.0, 0.0, 0.0, ("error a\x1b[2Jb\nc",))
    console = Console(width=100, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(render(snap, None))
    text = console.export_text()
    assert "error a\\x1b[2Jb\\nc" in text and no_raw_controls(text, newlines=True)


def test_one_line_is_bounded_and_printable_names_what_it_escapes() -> None:
    assert printable("a\tb\x00c\x7f\u2028") == "a\\tb\\x00c\\x7f\\u2028"
    assert printable("a\nb\x1b", keep_newlines=True) == "a\nb\\x1b"
    long = one_line("y" * 100_000)
    assert len(long) <= LINE_MAX and long.endswith(f"... ({100_000 - (LINE_MAX - 40)} more characters)")
