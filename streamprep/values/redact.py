"""Keep secrets out of everything a person or a broker sees."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_MASK = "***"
_USERINFO = re.compile(r"(?P<user>[^:@/\s]*):(?P<password>[^@/\s]*)@")  # just after "SCHEME://"
_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-")


def redact_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***`` (the user name is kept)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    if parts.password is None:
        return redact_text(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:{_MASK}@{host}"))


def redact_text(text: str) -> str:
    """Mask every ``scheme://user:password@`` found anywhere in ``text``, in time linear in its length (a
    regular expression for the scheme would try every letter of a long word as its start)."""
    out: list[str] = []
    done = 0
    at = text.find("://")
    while at >= 0:
        start = at
        while start > 0 and text[start - 1] in _SCHEME_CHARS:  # the run of scheme characters before "://"
            start -= 1
        scheme = text[start:at]
        m = _USERINFO.match(text, at + 3)
        if m is not None and any(c.isascii() and c.isalpha() for c in scheme):
            out += [text[done : m.start()], f"{m['user']}:{_MASK}@"]
            done = m.end()
        at = text.find("://", at + 3)
    return "".join(out) + text[done:] if out else text


# C0 and C1 controls, DEL, and the Unicode line and paragraph separators: a newline in a URL would forge a
# log line, an ANSI escape (ESC [ 2 J) would repaint the terminal
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_BUT_NEWLINE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
LINE_MAX = 4000  # characters in one error line; a longer message is cut, saying how much was left out


def _escape(match: re.Match[str]) -> str:
    c = match.group()
    return _NAMED.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")


def printable(text: str, keep_newlines: bool = False) -> str:
    """``text`` with every control character written as Python writes it in a string (``\\n``, ``\\x1b``),
    so it shows what it is and does nothing: newlines too, unless ``keep_newlines`` (a traceback's lines)."""
    return (_CONTROL_BUT_NEWLINE if keep_newlines else _CONTROL).sub(_escape, text)


def safe_text(text: str, keep_newlines: bool = False) -> str:
    """What a person or a log sees of ``text``: secrets masked (:func:`redact_text`), controls escaped."""
    return printable(redact_text(text), keep_newlines)


def one_line(text: str, limit: int = LINE_MAX) -> str:
    """``text`` as one line for ``streamprep: error: ...``: :func:`safe_text`, cut to ``limit`` characters."""
    line = safe_text(text)
    if len(line) <= limit:
        return line
    keep = limit - 40
    return f"{line[:keep]}... ({len(line) - keep} more characters)"
