"""Names as MQTT topic levels: one safe level per device or source name, and the limit every name keeps.

Every name that goes into a topic or a result (the device, source ids, model names and keys, zone and line
names, labels given in the config) is checked once, when the config is read, by :func:`check_name`: 1 to
:data:`NAME_MAX` characters, none of them a control character. ``/``, ``#`` and ``+`` are allowed in a name
(the payload keeps it as it is) and replaced by ``_`` in its topic level (:func:`topic_level`).
"""

from __future__ import annotations

import re

NAME_MAX = 128  # characters: at most 512 bytes of UTF-8, far below MQTT's 65535 bytes for a whole topic
_UNSAFE_LEVEL = re.compile(r"[/#+\x00-\x1f\x7f-\x9f]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def topic_level(name: str) -> str:
    """``name`` made safe as one MQTT topic level: no ``/``, ``#``, ``+`` or control characters, at most
    :data:`NAME_MAX` characters (names from the config are no longer; a label from a model's file may be)."""
    safe = _UNSAFE_LEVEL.sub("_", name[:NAME_MAX]).strip()
    return safe if safe and not safe.startswith("$") else f"_{safe}"[:NAME_MAX]


def check_name(name: str) -> str:
    """``name`` if it may name something (see the module's docs); else ValueError saying why, quoting only the
    start of a long name."""
    if not name:
        raise ValueError("must not be empty")
    if len(name) > NAME_MAX:
        raise ValueError(
            f"{name[:24]!r}... is {len(name)} characters long; names are at most {NAME_MAX} "
            "(they become MQTT topic levels)"
        )
    if (bad := _CONTROL.search(name)) is not None:
        raise ValueError(f"{name!r} contains a control character ({bad.group()!r}); use printable characters only")
    return name


def check_prefix(prefix: str) -> str:
    """``prefix`` if it may start topics (``topic_prefix``, Home Assistant's ``discovery_prefix``): levels that
    are names (or empty, as in ``/a``), no wildcards, at most 4 × :data:`NAME_MAX` characters."""
    if len(prefix) > 4 * NAME_MAX:
        raise ValueError(f"{prefix[:24]!r}... is {len(prefix)} characters long; at most {4 * NAME_MAX}")
    for level in prefix.split("/"):
        if level:
            check_name(level)
        if "+" in level or "#" in level:
            raise ValueError(f"{prefix!r}: '+' and '#' are MQTT wildcards, not allowed in a topic")
    return prefix
