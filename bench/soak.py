"""Chaos soak: the daemon under random faults for a while, then checked against its invariants.

The daemon (``streamprep run --config``, a real process) runs with an RTSP camera (the GStreamer test server
in ``tests/servers``), an FFmpeg ``lavfi`` camera and a bundled recording paced in real time, results to
stdout (a pipe this script reads) and to a real Mosquitto broker. A persistent-session subscriber collects
every result. Meanwhile, at random (seeded) moments, one of these faults is injected:

- the RTSP server killed, then restarted (sometimes at another frame size: a size change);
- the RTSP server hung (SIGSTOP) beyond the stall timeout, then resumed;
- the broker stopped, then restarted (with its persistence, as a broker restart in the field);
- a SIGHUP reload that adds a source (a recording, a recording whose frame size changes mid-stream, or a
  source with a region of interest outside its frames, which must fail alone), changes one (its frame
  rate), or removes one;
- stdout not read for a few seconds (a blocked output).

At the end (SIGTERM, with every fault healed) it checks:

1. the daemon never exited before it was told to, and it exits 0 (or 3, a failed source) without a traceback;
2. per source, ``sampled = processed + dropped`` in the end-of-run summary;
3. the subscriber received every processed result of every source exactly once after de-duplication by
   ``id``, in order per source;
4. RSS grew by less than ``--rss-bound`` MB (20) after warm-up (each kind of fault once, and at least the
   first quarter of the run): the median of the last tenth of the samples against the median of the first
   tenth after warm-up. A file source holds 18–37 MB while it decodes and the soak adds and removes them,
   so a short run's window can catch one or not: memory is judged on runs of ten minutes and more.

Run from the repository root (needs mosquitto and Debian's GStreamer RTSP server, as the tests do)::

    .venv/bin/python bench/soak.py --seconds 60 [--seed 1] [--json report.json]

Exits 1 if an invariant fails. ``tests/test_soak.py`` runs it for 60 seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "servers"))
sys.path.insert(0, str(ROOT / "tests"))
from rtsp import RtspServer, free_port  # noqa: E402

DEMO = ROOT / "recordings" / "demo_720p.mp4"
_SUMMARY = re.compile(r"source (\S+): \w+, (\d+) decoded, (\d+) sampled, (\d+) processed, (\d+) dropped")


@dataclass
class Broker:
    port: int
    conf: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.process = subprocess.Popen(
            [exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                import socket

                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            time.sleep(0.02)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@dataclass
class Subscriber:
    """Every result, as a persistent-session consumer would receive them."""

    port: int
    ids: dict[str, list[str]] = field(default_factory=dict)  # per source, unique ids in arrival order
    seen: set[str] = field(default_factory=set)
    duplicates: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    "127.0.0.1", self.port, identifier="soak-subscriber", clean_session=False
                ) as client:
                    await client.subscribe("streamprep/+/+/results", qos=1)
                    self.ready.set()
                    async for message in client.messages:
                        result = json.loads(bytes(message.payload))
                        if result["id"] in self.seen:
                            self.duplicates += 1
                            continue
                        self.seen.add(result["id"])
                        self.ids.setdefault(result["source"], []).append(result["id"])
            except aiomqtt.MqttError:
                await asyncio.sleep(0.2)


class Soak:
    def __init__(self, seconds: float, seed: int, work: Path, rss_bound_mb: float = 20.0) -> None:
        self.seconds = seconds
        self.rng = random.Random(seed)
        self.work = work
        self.rss_bound_mb = rss_bound_mb
        self.faults: list[str] = []
        self.stderr: list[str] = []
        self.rss: list[tuple[float, int]] = []
        self.reading = asyncio.Event()
        self.reading.set()
        self.stdout_lines = 0
        self.extra: dict[str, dict[str, Any]] = {}
        self.changed_fps = 5
        port = free_port()
        conf = work / "mosquitto.conf"
        user = "user root\n" if os.geteuid() == 0 else ""
        conf.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {work}/\nautosave_interval 1\n{user}"
        )
        self.broker = Broker(port, conf)
        self.rtsp = RtspServer(free_port(), ["--pattern", "--size", "640x360", "--fps", "15"])
        self.config = work / "soak.toml"

    # -- the daemon's config, rewritten for reloads
    def write_config(self) -> None:
        sources = [
            {"url": self.rtsp.url(), "id": "rtsp", "stall_timeout_s": 2, "open_timeout_s": 3, "backoff_cap_s": 2},
            {"url": "lavfi:testsrc2=size=640x360:rate=30,realtime", "id": "lavfi", "fps": self.changed_fps},
            {"url": str(DEMO), "id": "recording", "realtime": True},
            *self.extra.values(),
        ]
        lines = [
            'device = "soak"',
            "fps = 5",
            f'state_dir = "{self.work / "state"}"',
            "drain_timeout_s = 20",
            "[model]",
            "batch = 2",
            "[output]",
            'out = "-"',
            "[output.mqtt]",
            f'url = "mqtt://127.0.0.1:{self.broker.port}"',
            "backoff_cap_s = 1",
            "publish_timeout_s = 2",
            "keepalive_s = 5",
            "outbox_max = 100000",
        ]
        body = "\n".join(lines) + "\n"
        for s in sources:
            body += "[[sources]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in s.items())
        self.config.write_text(body)

    # -- faults
    async def fault_rtsp_kill(self, size: str | None = None) -> str:
        self.rtsp.kill()
        await asyncio.sleep(self.rng.uniform(1, 3))
        size = size or self.rng.choice(["640x360", "320x240"])
        self.rtsp.args = ["--pattern", "--size", size, "--fps", "15"]
        await asyncio.to_thread(self.rtsp.start)
        return f"RTSP server killed, restarted at {size}"

    async def fault_rtsp_hang(self) -> str:
        assert self.rtsp.process is not None
        self.rtsp.process.send_signal(signal.SIGSTOP)
        await asyncio.sleep(self.rng.uniform(2.5, 4))
        self.rtsp.process.send_signal(signal.SIGCONT)
        return "RTSP server hung (SIGSTOP), resumed"

    async def fault_broker(self) -> str:
        await asyncio.to_thread(self.broker.stop)
        await asyncio.sleep(self.rng.uniform(1, 4))
        await asyncio.to_thread(self.broker.start)
        return "broker restarted"

    async def fault_reload(self, daemon: Any, choice: str | None = None, kind: str | None = None) -> str:
        choice = choice or self.rng.choice(["add", "add", "change", "remove"])
        if choice == "remove" and self.extra:
            sid = self.rng.choice(sorted(self.extra))
            del self.extra[sid]
            what = f"reload removes {sid}"
        elif choice == "change":
            self.changed_fps = 3 if self.changed_fps == 5 else 5
            what = f"reload changes lavfi to {self.changed_fps} fps"
        else:
            n = len(self.faults)
            kind = kind or self.rng.choice(["recording", "two sizes", "bad region"])
            if kind == "recording":
                spec: dict[str, Any] = {"url": str(DEMO), "id": f"extra{n}", "realtime": True}
            elif kind == "two sizes":
                spec = {"url": str(self.work / "two-sizes.ts"), "id": f"sizes{n}", "realtime": True}
            else:
                spec = {"url": str(DEMO), "id": f"badroi{n}", "roi": [1000, 0, 600, 720]}
            self.extra[spec["id"]] = spec
            what = f"reload adds {spec['id']} ({kind})"
        self.write_config()
        daemon.send_signal(signal.SIGHUP)
        return what

    async def fault_block_stdout(self) -> str:
        self.reading.clear()
        seconds = self.rng.uniform(3, 8)
        await asyncio.sleep(seconds)
        self.reading.set()
        return f"stdout not read for {seconds:.1f} s"

    # -- the run
    async def read_stdout(self, stream: asyncio.StreamReader) -> None:
        while True:
            await self.reading.wait()
            line = await stream.readline()
            if not line:
                return
            self.stdout_lines += 1

    async def read_stderr(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self.stderr.append(line.decode(errors="replace").rstrip("\n"))

    async def run(self) -> dict[str, Any]:
        sys.path.insert(0, str(ROOT / "tests"))
        from conftest import make_clip

        make_clip(self.work / "two-sizes.ts", [("chelsea", (640, 360), 30), ("coffee", (1280, 720), 30)])
        self.broker.start()
        subscriber = Subscriber(self.broker.port)
        sub_task = asyncio.create_task(subscriber.run())
        await asyncio.wait_for(subscriber.ready.wait(), 10)
        self.rtsp.start()
        self.write_config()
        daemon = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "streamprep",
            "run",
            "--config",
            str(self.config),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert daemon.stdout is not None and daemon.stderr is not None
        readers = [
            asyncio.create_task(self.read_stdout(daemon.stdout)),
            asyncio.create_task(self.read_stderr(daemon.stderr)),
        ]
        start = time.monotonic()
        # warm-up: each kind of fault once, so that what the daemon allocates once (buffers for a frame size,
        # a reconnect's decoder) is in place before memory is watched; then faults at random
        plan: list[tuple[str, dict[str, Any]]] = [
            ("rtsp_kill", {"size": "320x240"}),
            ("reload", {"choice": "add", "kind": "two sizes"}),
            ("broker", {}),
            ("block_stdout", {}),
            ("rtsp_kill", {"size": "640x360"}),
            ("reload", {"choice": "add", "kind": "bad region"}),
            ("rtsp_hang", {}),
        ]
        warm = max(15.0, self.seconds / 4)
        exited_early = False
        faults: dict[str, Callable[..., Any]] = {
            "rtsp_kill": self.fault_rtsp_kill,
            "rtsp_hang": self.fault_rtsp_hang,
            "broker": self.fault_broker,
            "reload": lambda **kw: self.fault_reload(daemon, **kw),
            "block_stdout": self.fault_block_stdout,
        }
        busy: dict[str, asyncio.Task[str]] = {}
        component = {"rtsp_kill": "rtsp", "rtsp_hang": "rtsp", "broker": "broker", "reload": "reload"}
        next_fault = start + 3
        while time.monotonic() - start < self.seconds:
            await asyncio.sleep(0.5)
            with contextlib.suppress(FileNotFoundError, ProcessLookupError, IndexError):
                status = Path(f"/proc/{daemon.pid}/status").read_text()
                rss = int(status.split("VmRSS:")[1].split()[0])
                self.rss.append((time.monotonic() - start, rss))
            if daemon.returncode is not None:
                exited_early = True
                break
            for name, task in list(busy.items()):
                if task.done():
                    self.faults.append(f"{time.monotonic() - start:6.1f} s  {task.result()}")
                    del busy[name]
            if time.monotonic() >= next_fault:
                name, kwargs = plan[0] if plan else (self.rng.choice(list(faults)), {})
                key = component.get(name, name)
                if key not in busy:
                    busy[key] = asyncio.create_task(faults[name](**kwargs))
                    if plan:
                        plan.pop(0)
                        if not plan:  # the last of the warm-up faults: watch memory once they are over
                            warm = max(warm, time.monotonic() - start + 8.0)
                next_fault = time.monotonic() + (self.rng.uniform(1.5, 3) if plan else self.rng.uniform(2, 6))
        for task in busy.values():
            self.faults.append(f"{time.monotonic() - start:6.1f} s  {await task}")
        self.reading.set()
        if self.broker.process is None or self.broker.process.poll() is not None:
            await asyncio.to_thread(self.broker.start)
        if not exited_early:
            daemon.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(daemon.wait(), 60)
        await asyncio.gather(*readers)
        counts = {}
        for line in self.stderr:
            if m := _SUMMARY.search(line):
                counts[m.group(1)] = {
                    k: int(v)
                    for k, v in zip(("decoded", "sampled", "processed", "dropped"), m.groups()[1:], strict=True)
                }

        def delivered() -> bool:
            return all(len(subscriber.ids.get(s, [])) >= c["processed"] for s, c in counts.items())

        deadline = time.monotonic() + 30
        while not delivered() and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        sub_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sub_task
        self.rtsp.kill()
        self.broker.stop()
        return self.check(code, exited_early, counts, subscriber, warm)

    def check(
        self, code: int | None, exited_early: bool, counts: dict[str, dict[str, int]], sub: Subscriber, warm: float
    ) -> dict[str, Any]:
        problems: list[str] = []
        text = "\n".join(self.stderr)
        if exited_early:
            problems.append(f"the daemon exited on its own with {code}")
        if code not in (0, 3):
            problems.append(f"exit code {code}")
        if "Traceback" in text:
            problems.append("a traceback in the log")
        if not counts:
            problems.append("no end-of-run summary")
        for source, c in counts.items():
            if c["sampled"] != c["processed"] + c["dropped"]:
                problems.append(
                    f"{source}: sampled {c['sampled']} != processed {c['processed']} + dropped {c['dropped']}"
                )
            got = sub.ids.get(source, [])
            if len(got) != c["processed"]:
                problems.append(f"{source}: {c['processed']} processed but {len(got)} distinct results received")
            seqs = [int(i.rsplit("/", 1)[1]) for i in got]
            if seqs != sorted(seqs):
                problems.append(f"{source}: results out of order")
        after = [kb for t, kb in self.rss if t >= warm]
        # growth from the start of the run after warm-up to its end, each the median of a tenth of the
        # samples: the working set moves with the faults (sources added, a broker away), a leak keeps rising
        window = max(1, len(after) // 10)
        growth_mb = (statistics.median(after[-window:]) - statistics.median(after[:window])) / 1024 if after else 0.0
        if growth_mb >= self.rss_bound_mb:
            problems.append(f"RSS grew by {growth_mb:.1f} MB after warm-up")
        return {
            "seconds": self.seconds,
            "faults": self.faults,
            "exit_code": code,
            "sources": counts,
            "received": {s: len(v) for s, v in sub.ids.items()},
            "duplicates_dropped": sub.duplicates,
            "stdout_lines": self.stdout_lines,
            "rss_mb_after_warmup": [round(after[0] / 1024, 1), round(max(after) / 1024, 1)] if after else [],
            "rss_growth_mb": round(growth_mb, 1),
            "rss_mb_timeline": [(round(t), round(kb / 1024, 1)) for t, kb in self.rss[:: max(1, len(self.rss) // 40)]],
            "problems": problems,
            "log_tail": self.stderr[-40:] if problems else [],
        }


def main() -> int:
    parser = argparse.ArgumentParser(description="Chaos soak of the streamprep daemon")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the report here")
    parser.add_argument("--rss-bound", type=float, default=20.0, help="MB of RSS growth after warm-up allowed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        report = asyncio.run(Soak(args.seconds, args.seed, Path(tmp), args.rss_bound).run())
    print(f"soak: {report['seconds']:.0f} s, {len(report['faults'])} faults, exit {report['exit_code']}")
    for fault in report["faults"]:
        print(f"  {fault}")
    print("| source | decoded | sampled | processed | dropped | received |")
    print("|---|---|---|---|---|---|")
    for source, c in sorted(report["sources"].items()):
        received = report["received"].get(source, 0)
        print(f"| {source} | {c['decoded']} | {c['sampled']} | {c['processed']} | {c['dropped']} | {received} |")
    print(
        f"duplicates dropped by the subscriber: {report['duplicates_dropped']}; "
        f"stdout lines: {report['stdout_lines']}; "
        f"RSS after warm-up {report['rss_mb_after_warmup']} MB (growth {report['rss_growth_mb']} MB)"
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    for problem in report["problems"]:
        print(f"INVARIANT BROKEN: {problem}")
    if report["problems"]:
        print("the daemon's last log lines:")
        for line in report["log_tail"]:
            print(f"  {line}")
    print("invariants: " + ("all hold" if not report["problems"] else f"{len(report['problems'])} broken"))
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
