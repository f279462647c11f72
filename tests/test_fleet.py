"""A fleet behind one broker: daemons on several devices publish to an edge Mosquitto bridged to a central one;
consumers share the load with an MQTT 5 shared subscription; `streamprep fleet` lists every device and source."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from conftest import RECORDINGS, InBackground, ManagedBroker
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from rich.console import Console

from streamprep.ops.fleet import Fleet, render

DEMO = RECORDINGS / "demo_720p.mp4"
SHARED = "$share/consumers/streamprep/+/+/results"


class Consumer(InBackground):
    """One member of a consumer group: an MQTT 5 client with a persistent session and a shared subscription,
    reconnecting as a real consumer would; it keeps every result it is handed (duplicates too)."""

    def __init__(self, broker: ManagedBroker, name: str, received: dict[str, list[str]]) -> None:
        self.broker = broker
        self.name = name
        self.received = received  # result id -> the consumers it was handed to
        self.count = 0
        self.subscribed = asyncio.Event()

    async def _run(self) -> None:
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 600  # the session (and its queue) outlives a broker restart
        while True:
            try:
                async with aiomqtt.Client(
                    "127.0.0.1",
                    self.broker.port,
                    identifier=self.name,
                    protocol=aiomqtt.ProtocolVersion.V5,
                    clean_start=False,
                    properties=properties,
                ) as client:
                    await client.subscribe(SHARED, qos=1)
                    self.subscribed.set()
                    async for message in client.messages:
                        result = json.loads(bytes(message.payload))
                        self.received.setdefault(result["id"], []).append(self.name)
                        self.count += 1
            except aiomqtt.MqttError:
                await asyncio.sleep(0.1)


async def until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` every 50 ms until it holds (consumers and files cannot signal), with a deadline."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        await asyncio.sleep(0.05)


def daemon_config(tmp_path: Path, device: str, edge: ManagedBroker) -> Path:
    cfg = tmp_path / f"{device}.toml"
    cfg.write_text(
        f'device = "{device}"\nstate_dir = "{tmp_path / device}"\nfps = 5\nrealtime = true\n'
        f'[[sources]]\nurl = "{DEMO}"\nid = "door"\npolicy = "block"\n'
        f'[output]\nout = "{tmp_path / device}.jsonl"\n'
        f'[output.mqtt]\nurl = "{edge.url}"\nbackoff_cap_s = 0.5\npublish_timeout_s = 2\nkeepalive_s = 5\n'
        "status_interval_s = 1\n"
    )
    return cfg


@pytest.mark.slow
async def test_bridged_brokers_shared_subscriptions_and_outages_lose_nothing(
    mosquitto: Callable[..., ManagedBroker], tmp_path: Path
) -> None:
    queue = "max_queued_messages 100000"
    central = mosquitto("allow_anonymous true", "persistence true", queue)
    edge = mosquitto(
        "allow_anonymous true",
        "persistence true",
        queue,
        "connection central",
        f"address 127.0.0.1:{central.port}",
        "topic streamprep/# out 1",
        "cleansession false",
        "remote_clientid edge-bridge",
        "restart_timeout 1",
    )
    devices = ["edge-a", "edge-b", "edge-c"]
    received: dict[str, list[str]] = {}
    async with Consumer(central, "consumer-1", received) as one, Consumer(central, "consumer-2", received) as two:
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "streamprep",
                "run",
                "--config",
                str(daemon_config(tmp_path, device, edge)),
                stderr=asyncio.subprocess.PIPE,
            )
            for device in devices
        ]
        await until(lambda: len(received) >= 15, 60, "the first results at the consumers")
        central.stop()  # the bridge is down: the edge broker keeps what it cannot forward
        await asyncio.sleep(3)  # the outage itself, not a synchronisation
        central.start()
        edge.stop()  # the edge broker is down: each daemon's outbox keeps its results
        await asyncio.sleep(3)
        edge.start()
        assert all(p.returncode is None for p in procs), "the outages came while every daemon was publishing"
        outputs = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in procs)), 120)
        for proc, (_, err) in zip(procs, outputs, strict=True):
            assert proc.returncode == 0, err.decode()
        made = {json.loads(line)["id"] for d in devices for line in (tmp_path / f"{d}.jsonl").read_text().splitlines()}
        assert len(made) == 3 * 60
        await until(lambda: made <= set(received), 60, "every result at the consumer group")
        fleet = Fleet("streamprep")
        async with aiomqtt.Client("127.0.0.1", central.port, identifier="fleet-check") as client:
            await client.subscribe([("streamprep/+/status", 1), ("streamprep/+/+/status", 1)])
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(3):
                    async for message in client.messages:
                        fleet.take(str(message.topic), bytes(message.payload))
                        if sum(len(d.sources) for d in fleet.devices.values()) == 3 and len(fleet.devices) == 3:
                            break
    assert set(received) == made, "after dropping duplicates by id, exactly the results made, each once"
    duplicates = sum(len(v) - 1 for v in received.values())
    assert duplicates < len(made) // 2, f"QoS 1 may redeliver a few around the outages, not all: {duplicates}"
    assert one.count > 20 and two.count > 20, f"the group shares the load: {one.count} / {two.count}"
    assert sorted(fleet.devices) == devices, "the bridge forwards the retained statuses too"
    for device in devices:  # the statuses made as a run ends reach the broker before the sink closes
        view = fleet.devices[device]
        assert view.state == "offline", "each daemon said goodbye"
        door = view.sources["door"]
        assert door.state == "finished" and door.counts["sampled"] == door.counts["processed"] == 60
    table = render(fleet)
    assert table.row_count == 3


@pytest.mark.slow
async def test_fleet_command_lists_devices_and_sources_with_counts_while_they_run(
    mosquitto: Callable[..., ManagedBroker], tmp_path: Path
) -> None:
    broker = mosquitto("allow_anonymous true")
    procs = []
    for device in ("cam-box-1", "cam-box-2"):
        cfg = daemon_config(tmp_path, device, broker)
        procs.append(
            await asyncio.create_subprocess_exec(
                sys.executable, "-m", "streamprep", "run", "--config", str(cfg), stderr=asyncio.subprocess.PIPE
            )
        )

    async def fleet_json() -> dict[str, Any]:
        done = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "streamprep",
            "fleet",
            "--mqtt",
            broker.url,
            "--json",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(done.communicate(), 60)
        assert done.returncode == 0, err.decode()
        data: dict[str, Any] = json.loads(out)
        return data

    try:
        deadline = time.monotonic() + 60
        while True:  # until both daemons have published counts for a running source
            data = await fleet_json()
            running = [
                d
                for d in data["devices"]
                if d["state"] == "online"
                and d["sources"].get("door", {}).get("state") == "online"
                and d["sources"]["door"]["counts"].get("processed", 0) > 0
            ]
            if len(running) == 2:
                break
            assert time.monotonic() < deadline, data
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        for proc in procs:
            await asyncio.wait_for(proc.communicate(), 60)
    assert [d["device"] for d in data["devices"]] == ["cam-box-1", "cam-box-2"]
    door = data["devices"][0]["sources"]["door"]
    assert door["counts"]["sampled"] >= door["counts"]["processed"] > 0
    assert door["at"] > time.time() - 30
    table = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "streamprep", "fleet", "--mqtt", broker.url, stdout=asyncio.subprocess.PIPE
    )
    text, _ = await asyncio.wait_for(table.communicate(), 60)
    assert table.returncode == 0
    assert b"2 device(s), 2 source(s) under streamprep/" in text
    for name in (b"cam-box-1", b"cam-box-2", b"door", b"offline"):
        assert name in text


def test_fleet_without_a_broker_is_one_error_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "streamprep", "fleet", "--mqtt", "mqtt://127.0.0.1:9"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 5, done.stderr
    assert done.stderr.strip().startswith("streamprep: error: fleet: MQTT broker mqtt://127.0.0.1:9 unreachable")
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("topic", "payload", "devices"),
    [
        ("streamprep/d/status", b"online", {"d": ("online", [])}),
        ("streamprep/d/s/status", b'{"source":"s","state":"online","at":1.0}', {"d": ("unknown", ["s"])}),
        ("streamprep/d/s/results", b"{}", {}),
        ("other/d/status", b"online", {}),
        ("streamprep/d/s/status", b"not json", {}),
    ],
)
def test_fleet_takes_only_status_topics(topic: str, payload: bytes, devices: dict[str, Any]) -> None:
    fleet = Fleet("streamprep")
    fleet.take(topic, payload)
    assert {k: (v.state, list(v.sources)) for k, v in fleet.devices.items()} == devices


def test_names_and_reasons_from_the_broker_are_shown_escaped_never_obeyed() -> None:
    """Anyone who may publish under the prefix may send names with ANSI escapes, newlines or rich markup."""
    fleet = Fleet("streamprep")
    body = {"source": "s\x1b[2J", "state": "failed\r", "reason": "rtsp://u:pw@h/\nERROR x", "at": 1.0}
    fleet.take("streamprep/d[bold]\x1b]0;t\x07/s/status", json.dumps(body).encode())
    fleet.take("streamprep/e/status", b"online\x1b[31m")
    console = Console(width=300, record=True, file=io.StringIO())
    console.print(render(fleet))
    text = console.export_text()
    assert not [c for c in text if c != "\n" and (ord(c) < 32 or 127 <= ord(c) < 160)], "no raw control character"
    for shown in ("d[bold]\\x1b]0;t\\x07", "s\\x1b[2J", "failed\\r", "rtsp://u:***@h/\\nERROR x", "online\\x1b[31m"):
        assert shown in text
