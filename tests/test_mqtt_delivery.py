"""MQTT delivery that loses nothing: real Mosquitto brokers stopped, restarted, secured, on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from conftest import RECORDINGS, InBackground, ManagedBroker

DEMO = RECORDINGS / "demo_720p.mp4"
VFR = RECORDINGS / "vfr_720p.mp4"


class Subscriber(InBackground):
    """A persistent-session subscriber that keeps reconnecting, as a real consumer would."""

    def __init__(self, broker: ManagedBroker, topic: str = "streamprep/#", **auth: Any) -> None:
        self.broker = broker
        self.topic = topic
        self.auth = auth
        self.results: list[dict[str, Any]] = []
        self.topics: list[str] = []
        self.other: dict[str, bytes] = {}
        self.changed = asyncio.Event()
        self.subscribed = asyncio.Event()

    async def _run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    "127.0.0.1", self.broker.port, identifier="test-subscriber", clean_session=False, **self.auth
                ) as client:
                    await client.subscribe(self.topic, qos=1)
                    self.subscribed.set()
                    async for message in client.messages:
                        topic = str(message.topic)
                        if topic.endswith("/results"):
                            self.results.append(json.loads(bytes(message.payload)))
                            self.topics.append(topic)
                        else:
                            self.other[topic] = bytes(message.payload)
                        self.changed.set()
            except aiomqtt.MqttError:
                await asyncio.sleep(0.1)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"timed out waiting for {what}; have {len(self.results)} results"
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)

    def unique(self) -> list[dict[str, Any]]:
        seen: set[str] = set()
        out = []
        for r in self.results:
            if r["id"] not in seen:
                seen.add(r["id"])
                out.append(r)
        return out


def write_config(tmp_path: Path, broker: ManagedBroker, *extra: str, name: str = "c.toml") -> Path:
    cfg = tmp_path / name
    cfg.write_text(
        "\n".join(
            [
                'device = "dev"',
                f'state_dir = "{tmp_path / "state"}"',
                "[[sources]]",
                f'url = "{DEMO}"',
                'id = "demo"',
                'policy = "block"',
                "[output.mqtt]",
                f'url = "{broker.url}"',
                "backoff_cap_s = 0.5",
                "publish_timeout_s = 2",
                "keepalive_s = 5",
                *extra,
            ]
        )
        + "\n"
    )
    return cfg


async def streamprep(*args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streamprep",
        *args,
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.slow
async def test_broker_down_for_10s_mid_replay_loses_nothing(
    mosquitto: Callable[..., ManagedBroker], tmp_path: Path
) -> None:
    broker = mosquitto("allow_anonymous true", "persistence true")
    cfg = write_config(tmp_path, broker)
    async with Subscriber(broker) as sub:
        proc = await streamprep("run", "--config", str(cfg), "--realtime", "--fps", "5")
        await sub.wait_for(lambda: len(sub.results) >= 5, 30, "the first results")
        broker.stop()
        outage = time.monotonic()
        await asyncio.sleep(10)  # the outage itself, not a synchronisation
        broker.start()
        assert time.monotonic() - outage >= 10
        await sub.wait_for(lambda: len(sub.unique()) >= 60, 60, "all 60 results")
        _, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, stderr.decode()
    unique = sub.unique()
    assert [r["seq"] for r in unique] == list(range(60)), "every result, in order"
    assert len({r["id"].rsplit("/", 1)[0] for r in unique}) == 1
    for r in sub.results:  # duplicates (QoS 1 may redeliver) are the same result under the same id
        assert r == next(u for u in unique if u["id"] == r["id"])
    assert b"reconnected" in stderr


async def test_spooled_results_survive_sigkill_while_the_broker_is_down(
    mosquitto: Callable[..., ManagedBroker], tmp_path: Path
) -> None:
    broker = mosquitto("allow_anonymous true", "persistence true")
    cfg = write_config(tmp_path, broker)
    spool = tmp_path / "state" / "mqtt-outbox.sqlite3"
    async with Subscriber(broker) as sub:
        first = await streamprep("run", "--config", str(cfg), "--realtime", "--fps", "5")
        await sub.wait_for(lambda: len(sub.results) >= 5, 30, "the first results")
        broker.stop()
        deadline = time.monotonic() + 30
        spooled: list[str] = []
        while len(spooled) < 5:  # poll the spool until results have piled up in it
            assert time.monotonic() < deadline, "nothing was spooled while the broker was down"
            await asyncio.sleep(0.2)
            with contextlib.closing(sqlite3.connect(f"file:{spool}?mode=ro", uri=True)) as db:
                spooled = [json.loads(p)["id"] for (p,) in db.execute("SELECT payload FROM outbox ORDER BY id")]
        first.send_signal(signal.SIGKILL)
        await first.wait()
        with contextlib.closing(sqlite3.connect(f"file:{spool}?mode=ro", uri=True)) as db:
            spooled = [json.loads(p)["id"] for (p,) in db.execute("SELECT payload FROM outbox ORDER BY id")]
        broker.start()
        cfg2 = write_config(tmp_path, broker, name="c2.toml")
        cfg2.write_text(cfg2.read_text().replace(str(DEMO), str(VFR)))
        second = await streamprep("run", "--config", str(cfg2), "--fps", "1")
        _, stderr = await asyncio.wait_for(second.communicate(), 60)
        assert second.returncode == 0, stderr.decode()
        await sub.wait_for(lambda: set(spooled) <= {r["id"] for r in sub.results}, 30, "the spooled results")
    ids = [r["id"] for r in sub.unique()]
    positions = [ids.index(i) for i in spooled]
    assert positions == sorted(positions), "spooled results arrive in order"
    before = [r["seq"] for r in sub.unique() if r["id"].split("/")[0] == spooled[0].split("/")[0]]
    assert before == list(range(len(before))), "no gap in the first run's sequence"
    assert b"from before; delivering them first" in stderr


@pytest.mark.slow
async def test_outbox_bound_drops_oldest_and_says_so(mosquitto: Callable[..., ManagedBroker], tmp_path: Path) -> None:
    broker = mosquitto("allow_anonymous true", "persistence true")  # the subscriber's session survives too
    cfg = write_config(tmp_path, broker, "outbox_max = 5", 'outbox_policy = "drop_oldest"')
    async with Subscriber(broker) as sub:
        proc = await streamprep("run", "--config", str(cfg), "--realtime", "--fps", "5")
        await sub.wait_for(lambda: len(sub.results) >= 5, 30, "the first results")
        broker.stop()
        await asyncio.sleep(4)  # results pile up beyond the bound while the broker is away
        broker.start()
        _, stderr = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, stderr.decode()
        await sub.wait_for(lambda: any(r["seq"] == 59 for r in sub.results), 20, "the last result")
    text = stderr.decode()
    seqs = [r["seq"] for r in sub.unique()]
    missing = 60 - len(seqs)
    assert missing > 0, "the bound was reached"
    assert seqs == sorted(seqs)
    assert f"{missing} result(s) dropped (outbox full or spool unwritable)" in text
    assert f"sinks dropped {missing} result(s)" in text, "the summary says whose results were dropped"


def make_password_file(tmp_path: Path, user: str, password: str) -> Path:
    path = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(path), user, password], check=True, capture_output=True)
    path.chmod(0o600)
    return path


async def test_password_auth(mosquitto: Callable[..., ManagedBroker], tmp_path: Path) -> None:
    passwd = make_password_file(tmp_path, "edge", "Corr3ctHorse")
    broker = mosquitto("allow_anonymous false", f"password_file {passwd}")
    wrong = await streamprep("run", str(VFR), "--fps", "1", "--mqtt", f"mqtt://edge:Wr0ngPa55@127.0.0.1:{broker.port}")
    _, err = await asyncio.wait_for(wrong.communicate(), 60)
    errors = [line for line in err.decode().splitlines() if line.startswith("streamprep: error:")]
    assert wrong.returncode == 5 and len(errors) == 1
    assert "not authorized" in errors[0].lower() and "edge:***@" in errors[0]
    assert b"Wr0ngPa55" not in err

    async with Subscriber(broker, username="edge", password="Corr3ctHorse") as sub:
        cfg = write_config(tmp_path, broker, 'username = "edge"', 'password_env = "SP_TEST_MQTT_PASSWORD"')
        cfg.write_text(cfg.read_text().replace(str(DEMO), str(VFR)))
        ok = await streamprep("run", "--config", str(cfg), "--fps", "1", env={"SP_TEST_MQTT_PASSWORD": "Corr3ctHorse"})
        _, err = await asyncio.wait_for(ok.communicate(), 60)
        assert ok.returncode == 0, err.decode()
        creds = tmp_path / "creds"
        creds.mkdir()
        (creds / "mqtt-password").write_text("Corr3ctHorse\n")
        cfg2 = write_config(tmp_path, broker, 'username = "edge"', name="c2.toml")
        cfg2.write_text(cfg2.read_text().replace(str(DEMO), str(VFR)).replace('id = "demo"', 'id = "second"'))
        ok2 = await streamprep("run", "--config", str(cfg2), "--fps", "1", env={"CREDENTIALS_DIRECTORY": str(creds)})
        _, err2 = await asyncio.wait_for(ok2.communicate(), 60)
        assert ok2.returncode == 0, err2.decode()
        await sub.wait_for(lambda: len(sub.unique()) >= 20, 30, "both runs' results")
    assert b"Corr3ctHorse" not in err + err2


def make_ca_and_server_cert(tmp_path: Path, name: str) -> tuple[Path, Path, Path]:
    ca_key, ca_crt = tmp_path / f"{name}-ca.key", tmp_path / f"{name}-ca.crt"
    key, csr, crt = tmp_path / f"{name}.key", tmp_path / f"{name}.csr", tmp_path / f"{name}.crt"
    ext = tmp_path / f"{name}.ext"
    ext.write_text("subjectAltName = IP:127.0.0.1, DNS:localhost\n")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        f"/CN={name} test CA",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca_crt),
    )
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(csr))
    openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca_crt),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        str(ext),
        "-out",
        str(crt),
    )
    return ca_crt, crt, key


async def test_tls_broker(mosquitto: Callable[..., ManagedBroker], tmp_path: Path) -> None:
    ca, crt, key = make_ca_and_server_cert(tmp_path, "good")
    other_ca, _, _ = make_ca_and_server_cert(tmp_path, "other")
    broker = mosquitto("allow_anonymous true", f"cafile {ca}", f"certfile {crt}", f"keyfile {key}")
    url = f"mqtts://127.0.0.1:{broker.port}"

    def tls_config(ca_file: Path, name: str) -> Path:
        cfg = tmp_path / name
        cfg.write_text(f'sources = ["{VFR}"]\nfps = 1\n[output.mqtt]\nurl = "{url}"\nca_file = "{ca_file}"\n')
        return cfg

    good = await streamprep("run", "--config", str(tls_config(ca, "good.toml")))
    _, err = await asyncio.wait_for(good.communicate(), 60)
    assert good.returncode == 0, err.decode()
    assert b"connected to MQTT broker mqtts://" in err
    bad = await streamprep("run", "--config", str(tls_config(other_ca, "bad.toml")))
    _, err = await asyncio.wait_for(bad.communicate(), 60)
    errors = [line for line in err.decode().splitlines() if line.startswith("streamprep: error:")]
    assert bad.returncode == 5 and len(errors) == 1
    assert "TLS certificate verification failed" in errors[0]


async def test_hostile_source_name_gets_a_safe_topic_level(
    mosquitto: Callable[..., ManagedBroker], tmp_path: Path
) -> None:
    broker = mosquitto("allow_anonymous true")
    async with Subscriber(broker) as sub:
        cfg = tmp_path / "c.toml"
        cfg.write_text(
            f'device = "cam/+#"\nfps = 1\n[[sources]]\nurl = "{VFR}"\nid = "a/b#+"\n'
            f'[output.mqtt]\nurl = "{broker.url}"\n'
        )
        proc = await streamprep("run", "--config", str(cfg))
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
        await sub.wait_for(lambda: len(sub.results) >= 10, 30, "the results")
    assert set(sub.topics) == {"streamprep/cam___/a_b__/results"}
    assert {r["source"] for r in sub.results} == {"a/b#+"}, "the payload keeps the real name"


async def test_a_full_disk_under_the_spool_loses_nothing(
    mosquitto: Callable[..., ManagedBroker],
    tmp_path: Path,
    small_disk: Callable[[int], tuple[tuple[str, ...], Path]],
) -> None:
    prefix, state = small_disk(96)  # room for the database and its shared memory, and a few results
    broker = mosquitto("allow_anonymous true", "persistence true")
    async with Subscriber(broker):
        pass  # the subscriber's persistent session now exists on the broker
    broker.stop()
    cfg = write_config(tmp_path, broker, "wait_for_broker = true")
    cfg.write_text(
        cfg.read_text()
        .replace(str(tmp_path / "state"), str(state))
        .replace('device = "dev"', 'device = "dev"\ndrain_timeout_s = 60')
    )
    proc = await asyncio.create_subprocess_exec(
        *prefix,
        sys.executable,
        "-m",
        "streamprep",
        "run",
        "--config",
        str(cfg),
        "--fps",
        "10",
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
    )
    assert proc.stderr is not None
    seen: list[bytes] = []
    while not any(b"cannot be written" in line for line in seen):  # the spool has filled its disk
        line = await asyncio.wait_for(proc.stderr.readline(), 60)
        assert line, b"".join(seen).decode()
        seen.append(line)
    broker.start()
    async with Subscriber(broker) as sub:
        await sub.wait_for(lambda: len(sub.unique()) >= 120, 60, "all 120 results")
        _, rest = await asyncio.wait_for(proc.communicate(), 60)
    stderr = (b"".join(seen) + rest).decode()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert [r["seq"] for r in sub.unique()] == list(range(120)), "every result, in order"
    assert "120 processed, 0 dropped" in stderr


async def _read_until(proc: asyncio.subprocess.Process, fragment: bytes, seen: list[bytes], timeout: float) -> None:
    """Collect ``proc``'s stderr lines into ``seen`` until one holds ``fragment``."""
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    while not any(fragment in line for line in seen):
        line = await asyncio.wait_for(proc.stderr.readline(), max(0.1, deadline - time.monotonic()))
        assert line, f"no {fragment!r} in:\n" + b"".join(seen).decode()
        seen.append(line)


async def test_what_was_spooled_during_an_outage_is_delivered_by_the_drain(
    mosquitto: Callable[..., ManagedBroker], tmp_path: Path
) -> None:
    """The broker is away while the whole file is processed (everything goes to the spool in state_dir) and
    comes back only once the run is draining: the drain reads the spool and publishes all of it."""
    broker = mosquitto("allow_anonymous true", "persistence true")
    async with Subscriber(broker):
        pass  # the subscriber's persistent session now exists on the broker
    broker.stop()
    # events, and their JPEG snapshots: big rows, slow to read back from the spool
    cfg = write_config(tmp_path, broker, "wait_for_broker = true", "[events]", "[events.snapshots]", "publish = true")
    cfg.write_text(cfg.read_text().replace('device = "dev"', 'device = "dev"\ndrain_timeout_s = 20'))
    proc = await streamprep("run", "--config", str(cfg), "--fps", "5")
    seen: list[bytes] = []
    await _read_until(proc, b"still to deliver", seen, 60)  # every result is spooled, the sink is draining
    broker.start()
    back = time.monotonic()
    async with Subscriber(broker) as sub:
        await sub.wait_for(lambda: len(sub.unique()) >= 60, 18, "all 60 spooled results, during the drain")
        took = time.monotonic() - back
        _, rest = await asyncio.wait_for(proc.communicate(), 30)
    stderr = (b"".join(seen) + rest).decode()
    assert proc.returncode == 0, stderr
    assert [r["seq"] for r in sub.unique()] == list(range(60)), "every result, in order"
    assert "drain deadline" not in stderr and "kept in the spool" not in stderr, stderr
    assert "streamprep/dev/demo/events" in sub.other, "the spooled events were published too"
    assert any(t.endswith("/snapshot") for t in sub.other), "and their snapshots"
    # reconnecting takes at most backoff_cap_s (0.5 s); publishing 60 results and their events well under a
    # second. (Before the fix the drain spun without reading the spool, for seconds, up to its deadline.)
    assert took < 3.0, f"the spool took {took:.1f} s to reach the subscriber after the broker came back"
    with sqlite3.connect(tmp_path / "state" / "mqtt-outbox.sqlite3") as db:
        assert db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0, "the spool is empty afterwards"


def _source_line(stderr: str, source: str) -> str:
    return next(x for x in stderr.splitlines() if f"source {source}: " in x and " sampled, " in x)


async def test_results_lost_at_shutdown_are_in_their_sources_counts(
    mosquitto: Callable[..., ManagedBroker], tmp_path: Path
) -> None:
    """No state_dir and a broker that stays away: the results are lost at shutdown (exit 5), and the
    per-source summary line says so, the same number as the error line."""
    broker = mosquitto("allow_anonymous true")
    broker.stop()  # its port now refuses connections
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'device = "dev"\ndrain_timeout_s = 2\n[[sources]]\nurl = "{DEMO}"\nid = "demo"\npolicy = "block"\n'
        f'[output.mqtt]\nurl = "{broker.url}"\nwait_for_broker = true\nbackoff_cap_s = 0.5\n'
    )
    proc = await streamprep("run", "--config", str(cfg), "--fps", "5")
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    stderr = err.decode()
    assert proc.returncode == 5, stderr
    errors = [x for x in stderr.splitlines() if x.startswith("streamprep: error:")]
    assert len(errors) == 1 and "60 result(s) could not be delivered and are lost" in errors[0], stderr
    line = _source_line(stderr, "demo")
    assert "60 processed, 0 dropped; sinks dropped 60 result(s) (lost 60)" in line, line


async def test_results_a_full_spool_could_not_keep_are_in_their_sources_counts(
    mosquitto: Callable[..., ManagedBroker],
    tmp_path: Path,
    small_disk: Callable[[int], tuple[tuple[str, ...], Path]],
) -> None:
    """The spool's disk is full and the broker stays away: what the spool kept waits for the next run, the
    rest is lost (exit 5), and the per-source line counts exactly those lost (sink_dropped)."""
    prefix, state = small_disk(96)  # room for the database and its shared memory, and a few results
    broker = mosquitto("allow_anonymous true")
    broker.stop()  # its port now refuses connections
    cfg = write_config(tmp_path, broker, "wait_for_broker = true")
    cfg.write_text(
        cfg.read_text()
        .replace(str(tmp_path / "state"), str(state))
        .replace('device = "dev"', 'device = "dev"\ndrain_timeout_s = 2')
    )
    proc = await asyncio.create_subprocess_exec(
        *prefix,
        sys.executable,
        "-m",
        "streamprep",
        "run",
        "--config",
        str(cfg),
        "--fps",
        "10",
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 90)
    stderr = err.decode()
    assert proc.returncode == 5, stderr
    assert "cannot be written" in stderr, "the spool filled its disk"
    errors = [x for x in stderr.splitlines() if x.startswith("streamprep: error:")]
    assert len(errors) == 1, stderr
    lost = re.search(
        r"(\d+) result\(s\) could not be delivered and are lost \(the spool could not be written\)", errors[0]
    )
    assert lost is not None, errors[0]
    kept = re.search(r"MQTT: (\d+) result\(s\) not yet delivered .* kept in the spool", stderr)
    assert kept is not None, stderr
    assert int(lost.group(1)) + int(kept.group(1)) == 120, "each result is either kept or lost"
    line = _source_line(stderr, "demo")
    n = lost.group(1)
    assert f"120 processed, 0 dropped; sinks dropped {n} result(s) (lost {n})" in line, line
