"""Events over MQTT against real Mosquitto brokers: nothing lost while the broker is away, retained counts,
snapshots, and Home Assistant discovery configs that a broker accepts and keeps."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from conftest import RECORDINGS, InBackground, ManagedBroker
from test_mqtt_delivery import streamprep

CLIP = RECORDINGS / "tracks_800x600.mp4"
TRUTH = json.loads(CLIP.with_suffix(".json").read_text())


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool


class Collector(InBackground):
    """Every message on ``topic``, in arrival order, from a (persistent, when ``client_id``) session."""

    def __init__(self, broker: ManagedBroker, topic: str, client_id: str | None = None) -> None:
        self.broker, self.topic, self.client_id = broker, topic, client_id
        self.messages: list[Received] = []
        self.changed = asyncio.Event()
        self.subscribed = asyncio.Event()

    async def _run(self) -> None:
        persistent = self.client_id is not None
        while True:
            try:
                async with aiomqtt.Client(
                    "127.0.0.1", self.broker.port, identifier=self.client_id, clean_session=not persistent
                ) as client:
                    await client.subscribe(self.topic, qos=1)
                    self.subscribed.set()
                    async for m in client.messages:
                        self.messages.append(Received(str(m.topic), bytes(m.payload), bool(m.retain)))
                        self.changed.set()
            except aiomqtt.MqttError:
                await asyncio.sleep(0.1)  # a consumer's reconnect pause, not a synchronisation

    async def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"timed out waiting for {what}; have {len(self.messages)} messages"
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)

    def events(self) -> list[dict[str, Any]]:
        """Event messages without QoS 1 duplicates, in arrival order."""
        seen: set[str] = set()
        out = []
        for m in self.messages:
            if m.topic.endswith("/events"):
                event = json.loads(m.payload)
                if event["id"] not in seen:
                    seen.add(event["id"])
                    out.append(event)
        return out

    def latest(self) -> dict[str, bytes]:
        return {m.topic: m.payload for m in self.messages}


def scene_config(tmp_path: Path, broker: ManagedBroker, *events: str) -> Path:
    cfg = tmp_path / "events.toml"
    cfg.write_text(
        "\n".join(
            [
                'device = "dev"',
                f'state_dir = "{tmp_path / "state"}"',
                "[model]",
                "score_threshold = 0.3",
                "[[sources]]",
                f'url = "{CLIP}"',
                'id = "yard"',
                'policy = "block"',
                "[[sources.zones]]",
                'name = "mat"',
                f"polygon = {TRUTH['zones']['mat']}",
                "[[sources.lines]]",
                'name = "gate"',
                f"points = {TRUTH['lines']['gate']}",
                "[events]",
                'labels = ["person", "cat", "cup"]',
                "new_track_score = 0.5",
                *events,
                "[output.mqtt]",
                f'url = "{broker.url}"',
                "backoff_cap_s = 0.5",
                "publish_timeout_s = 2",
                "keepalive_s = 5",
            ]
        )
        + "\n"
    )
    return cfg


@pytest.mark.slow
async def test_events_and_snapshots_survive_a_10s_broker_outage(
    mosquitto: Callable[..., ManagedBroker], tmp_path: Path
) -> None:
    broker = mosquitto("allow_anonymous true", "persistence true")
    cfg = scene_config(tmp_path, broker, "results = false", "[events.snapshots]", "publish = true")
    async with Collector(broker, "streamprep/#", client_id="events-subscriber") as sub:
        proc = await streamprep("run", "--config", str(cfg), "--realtime", "--fps", "5")
        await sub.wait_for(lambda: any(e["type"] == "new" for e in sub.events()), 30, "the first event")
        broker.stop()
        outage = time.monotonic()
        await asyncio.sleep(10)  # the outage itself, not a synchronisation
        broker.start()
        assert time.monotonic() - outage >= 10
        _, stderr = await asyncio.wait_for(proc.communicate(), 90)
        assert proc.returncode == 0, stderr.decode()
        await sub.wait_for(lambda: sum(e["type"] == "end" for e in sub.events()) >= 4, 30, "every end event")
    assert b"reconnected" in stderr
    events = sub.events()
    assert not [m for m in sub.messages if m.topic.endswith("/results")], "results = false"
    visits: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        visits.setdefault(e["event_id"], []).append(e)
    assert len(visits) == 4
    for evs in visits.values():
        assert [e["seq"] for e in evs] == list(range(len(evs))), "every message of the visit, in order"
        assert evs[0]["type"] == "new" and evs[-1]["type"] == "end"
    crossings = [(e["label"], e["direction"]) for e in events if e["type"] == "crossing"]
    assert crossings == [("person", "negative"), ("cat", "positive"), ("cat", "negative")]
    during = [e for e in events if e["type"] != "new" and e["pts"] < 10]
    assert during, "events from the outage were delivered afterwards"
    for end in (e for e in events if e["type"] == "end"):
        assert end["snapshot"]["published"] is True
        topic = f"streamprep/dev/yard/events/{end['event_id']}/snapshot"
        jpeg = next(m.payload for m in sub.messages if m.topic == topic)
        assert jpeg[:2] == b"\xff\xd8" and len(jpeg) <= 262_144
        assert (tmp_path / "state" / "snapshots" / end["snapshot"]["path"]).read_bytes()[:2] == b"\xff\xd8"
    # a newcomer gets the counts (retained)
    async with Collector(broker, "streamprep/dev/yard/+/#") as late:
        wanted = {
            "streamprep/dev/yard/zones/mat/cat": b"0",
            "streamprep/dev/yard/lines/gate/person/negative": b"1",
            "streamprep/dev/yard/lines/gate/cat/positive": b"1",
            "streamprep/dev/yard/lines/gate/cat/negative": b"1",
            "streamprep/dev/yard/lines/gate/cup/positive": b"0",
        }
        await late.wait_for(lambda: wanted.items() <= late.latest().items(), 10, "the retained counts")
        assert all(m.retain for m in late.messages)


async def test_home_assistant_discovery_is_accepted_and_retained(
    mosquitto: Callable[..., ManagedBroker], tmp_path: Path
) -> None:
    broker = mosquitto("allow_anonymous true")
    cfg = scene_config(tmp_path, broker, "[events.homeassistant]", "enabled = true")
    proc = await streamprep("run", "--config", str(cfg), "--fps", "2")
    _, stderr = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0, stderr.decode()
    async with Collector(broker, "#") as sub:  # after the run: only what the broker retained
        await sub.wait_for(
            lambda: sum(m.topic.startswith("homeassistant/") for m in sub.messages) >= 12, 10, "12 configs"
        )
        retained = sub.latest()
    configs = {t: json.loads(p) for t, p in retained.items() if t.startswith("homeassistant/")}
    assert all(m.retain for m in sub.messages)
    assert len(configs) == 12  # per zone and label: a count and an occupancy; per line, label, direction: a counter
    assert len({c["unique_id"] for c in configs.values()}) == 12
    kinds: dict[str, int] = {}
    for topic, config in configs.items():
        m = re.fullmatch(r"homeassistant/(sensor|binary_sensor)/streamprep_dev/([A-Za-z0-9_-]+)/config", topic)
        assert m, topic
        kinds[m.group(1)] = kinds.get(m.group(1), 0) + 1
        assert config["availability_topic"] == "streamprep/dev/status"
        assert retained["streamprep/dev/status"] == b"offline", "the device said goodbye: unavailable now"
        assert (config["payload_available"], config["payload_not_available"]) == ("online", "offline")
        assert config["device"]["identifiers"] == ["streamprep_dev"]
        assert config["state_topic"] in retained, f"{config['state_topic']} has a retained value"
        value = int(retained[config["state_topic"]])
        if m.group(1) == "binary_sensor":
            assert config["device_class"] == "occupancy" and "value_template" in config
        else:
            assert config["state_class"] in ("measurement", "total_increasing") and value >= 0
    assert kinds == {"sensor": 9, "binary_sensor": 3}
    gate = configs["homeassistant/sensor/streamprep_dev/yard_gate_cat_positive_crossings/config"]
    assert retained[gate["state_topic"]] == b"1"
