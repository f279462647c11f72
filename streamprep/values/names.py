"""Names as MQTT topic levels: one safe level per device or source name."""

from __future__ import annotations

import re

_UNSAFE_LEVEL = re.compile(r"[/#+\x00-\x1f\x7f]")


def topic_level(name: str) -> str:
    """``name`` made safe as one MQTT topic level: no ``/``, ``#``, ``+`` or control characters."""
    safe = _UNSAFE_LEVEL.sub("_", name).strip()
    return safe if safe and not safe.startswith("$") else f"_{safe}"
