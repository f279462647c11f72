"""Home Assistant MQTT discovery for zones and lines (``[events.homeassistant] enabled = true``).

For every source, zone and label: a sensor with the number of objects in the zone and a binary sensor
(occupancy: on while it is not zero); for every line, label and direction: a sensor counting crossings.
All read the retained counts streamprep publishes, and take the device's availability from its retained
``online``/``offline`` status topic. The configs are retained, so Home Assistant finds them whenever it
starts; streamprep re-publishes them on every connect.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from streamprep.config.resolve import ResolvedSource
from streamprep.config.schema import Config
from streamprep.values.names import topic_level


def _object_id(*parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", "_".join(parts))


def _version() -> str:
    try:
        return version("streamprep")
    except PackageNotFoundError:
        return "unknown"


def discovery_messages(cfg: Config, sources: Sequence[ResolvedSource]) -> list[tuple[str, bytes]]:
    """Every discovery config for the zones and lines of ``sources`` (those of ``cfg``, resolved) as
    (topic, payload), for retained publication; empty when it is off."""
    events, mqtt = cfg.events, cfg.output.mqtt
    if events is None or mqtt is None or not events.homeassistant.enabled:
        return []
    prefix, device = mqtt.topic_prefix, topic_level(cfg.device)
    node = _object_id("streamprep", device)
    base = {
        "availability_topic": f"{prefix}/{device}/status",
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": {
            "identifiers": [node],
            "name": f"streamprep {cfg.device}",
            "manufacturer": "streamprep",
            "model": "streamprep",
            "sw_version": _version(),
        },
        "origin": {"name": "streamprep", "sw_version": _version()},
    }
    disc = events.homeassistant.discovery_prefix
    out: list[tuple[str, bytes]] = []

    def add(component: str, object_id: str, config: dict[str, object]) -> None:
        payload = {**config, "unique_id": f"{node}_{object_id}", **base}
        out.append((f"{disc}/{component}/{node}/{object_id}/config", json.dumps(payload).encode()))

    for spec in sources:
        sid = spec.id
        source = topic_level(sid)
        for zone in spec.zones:
            for label in zone.labels or events.labels or ():
                state = f"{prefix}/{device}/{source}/zones/{zone.name}/{topic_level(label)}"
                object_id = _object_id(sid, zone.name, label)
                add(
                    "sensor",
                    f"{object_id}_count",
                    {
                        "name": f"{sid} {zone.name} {label} count",
                        "state_topic": state,
                        "state_class": "measurement",
                        "icon": "mdi:counter",
                    },
                )
                add(
                    "binary_sensor",
                    f"{object_id}_occupancy",
                    {
                        "name": f"{sid} {zone.name} {label} occupancy",
                        "state_topic": state,
                        "value_template": "{{ 'ON' if (value | int(0)) > 0 else 'OFF' }}",
                        "device_class": "occupancy",
                    },
                )
        for line in spec.lines:
            for label in line.labels or events.labels or ():
                counts = f"{prefix}/{device}/{source}/lines/{line.name}/{topic_level(label)}"
                for direction in ("positive", "negative"):
                    add(
                        "sensor",
                        f"{_object_id(sid, line.name, label, direction)}_crossings",
                        {
                            "name": f"{sid} {line.name} {label} {direction} crossings",
                            "state_topic": f"{counts}/{direction}",
                            "state_class": "total_increasing",
                            "icon": "mdi:transit-transfer",
                        },
                    )
    return out
