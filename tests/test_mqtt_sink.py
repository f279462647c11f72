"""Results over a real Mosquitto broker on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import sys

import aiomqtt
from conftest import RECORDINGS, Broker

from streamprep.values.names import topic_level

DEMO = RECORDINGS / "demo_720p.mp4"


async def test_one_message_per_sampled_frame_in_order(broker: Broker, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "r.jsonl"
    messages: list[tuple[str, dict[str, object]]] = []
    births: list[bytes] = []
    async with aiomqtt.Client("127.0.0.1", broker.port) as sub:
        await sub.subscribe("streamprep/#", qos=1)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "streamprep",
            "run",
            str(DEMO),
            "--fps",
            "2",
            "--mqtt",
            broker.url,
            "--out",
            str(out),
            "--device",
            "edge/1",
            stderr=asyncio.subprocess.PIPE,
        )

        async def collect() -> None:
            async for message in sub.messages:
                if str(message.topic) == "streamprep/edge_1/status":
                    births.append(bytes(message.payload))
                    continue
                messages.append((str(message.topic), json.loads(bytes(message.payload))))
                if sum(t.endswith("/results") for t, _ in messages) == 24:
                    return

        await asyncio.wait_for(collect(), 60)
        _, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, stderr.decode()
    assert births[:1] == [b"online"]
    statuses = [m["state"] for t, m in messages if t == "streamprep/edge_1/demo_720p/status"]
    assert statuses[:2] == ["connecting", "online"]
    messages = [(t, m) for t, m in messages if t.endswith("/results")]
    assert {topic for topic, _ in messages} == {"streamprep/edge_1/demo_720p/results"}
    assert [m["seq"] for _, m in messages] == list(range(24))
    assert [m["pts"] for _, m in messages] == [i / 2 for i in range(24)]
    file_rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["seq"] for r in file_rows] == list(range(24)), "--out and --mqtt together both get everything"
    assert [m["detections"] for _, m in messages] == [r["detections"] for r in file_rows]
    async with aiomqtt.Client("127.0.0.1", broker.port) as late:
        await late.subscribe("streamprep/#", qos=1)
        retained = {}
        async for message in late.messages:
            retained[str(message.topic)] = bytes(message.payload)
            if len(retained) == 2:
                break
    assert json.loads(retained["streamprep/edge_1/demo_720p/status"])["state"] == "finished"
    assert retained["streamprep/edge_1/status"] == b"offline", "a clean exit leaves the device offline"


def test_topic_levels_are_sanitised() -> None:
    assert topic_level("a/b#+") == "a_b__"
    assert topic_level("$SYS") == "_$SYS"
    assert topic_level("") == "_"
    assert topic_level("cam-1") == "cam-1"
