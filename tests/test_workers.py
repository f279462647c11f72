"""``streamprep run --workers N``: shares, the supervisor's merged status, a killed worker restarted, reload."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import RECORDINGS, Broker, free_port, replay, stable
from test_daemon import Daemon, assert_accounted, assert_no_traceback, counts
from test_service import NotifySocket, wait_until

from streamprep.config.schema import parse
from streamprep.ops.service import read_status
from streamprep.ops.workers import Carried, merge, plan, settle, shares, worker_config
from streamprep.values.errors import most_serious as combine
from streamprep.values.metrics import HistogramSnapshot, SinkSnapshot, Snapshot, SourceSnapshot
from streamprep.values.published import VOLATILE_FIELDS

LIVE = "lavfi:testsrc2=size=320x240:rate=10,realtime"  # a cheap live source that never ends
DEMO = RECORDINGS / "demo_720p.mp4"


def test_shares_are_balanced_stable_everywhere_and_sticky_on_reload() -> None:
    ids = [f"cam-{i}" for i in range(64)]
    here = plan(ids, 8)
    assert sorted(here) == sorted(ids)
    loads = [list(here.values()).count(k) for k in range(8)]
    assert max(loads) - min(loads) <= 1, loads
    code = (
        "import json; from streamprep.ops.workers import plan\n"
        "print(json.dumps(plan([f'cam-{i}' for i in reversed(range(64))], 8)))"
    )
    for seed in ("1", "2"):  # Python's own hash differs per process, the config's order too: the plan must not
        env = {**os.environ, "PYTHONHASHSEED": seed}
        other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
        assert json.loads(other.stdout) == here
    for few, workers in ((4, 2), (3, 4), (16, 8), (20, 3)):
        loads = [list(plan(ids[:few], workers).values()).count(k) for k in range(workers)]
        assert max(loads) - min(loads) <= 1, (few, workers, loads)
    grown = plan([*ids, "cam-new"], 8, here)
    assert all(grown[sid] == here[sid] for sid in ids), "a reload moves no source that stays"
    shrunk = plan(ids[1:], 8, grown)
    assert all(shrunk[sid] == here[sid] for sid in ids[1:])
    assert grown["cam-new"] in {k for k in range(8) if loads_of(here, k) == min(loads_of(here, j) for j in range(8))}
    assert shares(ids[:3], {"cam-0": 1, "cam-1": 0, "cam-2": 1}, 2) == [["cam-1"], ["cam-0", "cam-2"]]


def loads_of(placed: dict[str, int], k: int) -> int:
    return sum(1 for v in placed.values() if v == k)


def test_a_workers_config_is_its_share_with_its_own_outbox_client_id_and_socket(tmp_path: Path) -> None:
    cfg = parse(
        {
            "sources": [str(DEMO), str(DEMO), str(RECORDINGS / "vfr_720p.mp4")],
            "state_dir": str(tmp_path / "state"),
            "output": {"mqtt": "mqtt://127.0.0.1:1883"},
            "metrics": {"listen": "127.0.0.1:9108"},
            "device": "edge-01",
            "workers": 2,
        }
    )
    ids = cfg.source_ids()
    assert ids == ["demo_720p", "demo_720p-2", "vfr_720p"]
    placed = plan(ids, 2)
    mine = [worker_config(cfg, k, placed, tmp_path / "run") for k in range(2)]
    assert sorted(sid for w in mine for sid in w.source_ids()) == sorted(ids), "each source once, ids kept"
    for k, w in enumerate(mine):
        assert w.source_ids() == [sid for sid in ids if placed[sid] == k]
        assert w.state_dir == tmp_path / "state" / f"worker-{k}"
        assert w.output.mqtt is not None and w.output.mqtt.client_id == f"streamprep-edge-01-worker{k}"
        assert w.output.out is None, "MQTT only: no JSON lines"
        assert w.status.socket == tmp_path / "run" / f"worker-{k}.sock"
        assert w.metrics.listen is None and w.workers == 1


def snapshot(sources: list[SourceSnapshot], frames: int, p95: float) -> Snapshot:
    h = HistogramSnapshot((1.0, 10.0), (1, frames), 5.0 * frames, frames)
    return Snapshot(
        at=0.0,
        sources=tuple(sources),
        sinks=(SinkSnapshot("mqtt://b", True, frames, 0, 0),),
        batches=frames,
        frames=frames,
        delivered=frames,
        queued=1,
        batch_fill=1.0,
        preprocess_p50_ms=1.0,
        preprocess_p95_ms=p95,
        inference_p50_ms=10.0 * frames,
        inference_p95_ms=p95,
        errors=("12:00:01 a: stalled",),
        histograms={"inference_ms": h},
    )


def source(name: str, sampled: int, processed: int, **drops: int) -> SourceSnapshot:
    return SourceSnapshot(
        name, "online", "", sampled, sampled, sum(drops.values()), processed, 0, 0, 0, 1.0, 2.0, drops
    )


def test_merged_snapshot_sums_workers_and_carries_a_dead_workers_counts_over() -> None:
    a = snapshot([source("a", 10, 9, queue=1)], 9, 30.0)
    b = snapshot([source("b", 20, 20)], 20, 50.0)
    merged = merge([(0, a), (1, b)], {}, {})
    assert [s.source for s in merged.sources] == ["a", "b"]
    assert (merged.frames, merged.delivered, merged.queued) == (29, 29, 2)
    assert merged.inference_p95_ms == 50.0, "the largest 95th percentile: an upper bound"
    assert merged.inference_p50_ms == pytest.approx((90 * 9 + 200 * 20) / 29), "medians weighted by results"
    assert merged.histograms["inference_ms"].counts == (2, 29)
    assert [k.name for k in merged.sinks] == ["mqtt://b (worker 0)", "mqtt://b (worker 1)"]
    assert merged.errors == ("12:00:01 [worker 0] a: stalled", "12:00:01 [worker 1] a: stalled")
    # worker 1 died with 3 frames in flight; its next run has counted 5 so far
    dead = source("b", 20, 15, queue=2)
    carried = Carried({"b": settle(dead, "worker 1 was killed by SIGKILL")})
    assert carried.sources["b"].drops["stopped"] == 3 and carried.sources["b"].state == "failed"
    waiting = merge([(0, a), (1, None)], {1: carried}, {1: "worker 1 was killed; restarting in 1.0 s"})
    assert [(s.source, s.state, s.sampled) for s in waiting.sources][1] == ("b", "failed", 20)
    again = merge([(0, a), (1, snapshot([source("b", 5, 5)], 5, 1.0))], {1: carried}, {})
    b2 = again.sources[1]
    assert (b2.state, b2.sampled, b2.processed, b2.dropped, b2.reconnects) == ("online", 25, 20, 5, 1)
    assert b2.sampled == b2.processed + b2.dropped
    # its last snapshot is a second old: the supervisor wrote 18 results of b, not 15
    live = settle(dead, "killed", written=18)
    assert (live.sampled, live.processed, live.drops) == (20, 18, {"queue": 2}), "the 3 in flight: 3 written"
    more = settle(dead, "killed", written=19)
    assert (more.sampled, more.processed, more.dropped) == (21, 19, 2), "one more sampled than it said"
    # a file resumed after its last result written (seq 29 of a run that started at 0): 30 delivered, 28
    # written; of the drops the snapshot lists, those that fit before; the frames after are sampled again
    failing = source("f", 40, 28, failed=5)
    file = settle(failing, "killed", written=28, delivered=30)
    assert (file.sampled, file.processed, file.drops) == (30, 28, {"failed": 2})
    assert settle(source("f", 40, 28), "killed", written=28, delivered=30).drops == {"stopped": 2}


def test_exit_statuses_combine_to_the_most_serious() -> None:
    assert combine([0, 0]) == 0
    assert combine([0, 3, 5]) == 3
    assert combine([5, 2]) == 5
    assert combine([3, 1]) == 1
    assert combine([130, 1]) == 130


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    sock = NotifySocket(tmp_path / "notify.sock")
    yield sock
    sock.sock.close()


def pid_of(daemon: Daemon, index: int, after: int = 0) -> int:
    """The pid of worker ``index``'s latest start (one other than ``after``), from the supervisor's log."""
    pattern = re.compile(rf"worker {index} started \(pid (\d+)\)")

    def pids() -> list[int]:
        return [int(m.group(1)) for line in list(daemon.lines) if (m := pattern.search(line))]

    wait_until(lambda: bool(pids()) and pids()[-1] != after, 60, f"worker {index} (re)started")
    return pids()[-1]


def status(path: Path) -> Snapshot:
    return asyncio.run(read_status(path))


def test_workers_share_the_sources_merge_their_status_and_a_killed_worker_is_restarted(
    tmp_path: Path, broker: Broker, notify: NotifySocket
) -> None:
    ids = ["cam-a", "cam-b", "cam-c", "cam-d"]
    expected = plan(ids, 2)
    assert sorted(expected.values()) == [0, 0, 1, 1], "two sources each"
    cfg = tmp_path / "c.toml"
    sources = "".join(f'[[sources]]\nurl = "{LIVE}"\nid = "{sid}"\n' for sid in ids)
    cfg.write_text(f'fps = 5\ndevice = "edge"\nstate_dir = "{tmp_path / "state"}"\nworkers = 2\n{sources}')
    sock, out = tmp_path / "status.sock", tmp_path / "r.jsonl"
    metrics_port = free_port()
    daemon = Daemon(
        "run",
        "--config",
        str(cfg),
        "--out",
        str(out),
        "--mqtt",
        broker.url,
        "--status-socket",
        str(sock),
        "--metrics",
        f"127.0.0.1:{metrics_port}",
        prefix=("env", f"NOTIFY_SOCKET={notify.path}"),  # the supervisor's; the workers must not use it
    )
    try:
        for k in (0, 1):
            share = [sid for sid in ids if expected[sid] == k]
            daemon.wait_for(f"worker {k}: {len(share)} source(s): {', '.join(share)}")
        notify.wait_for("READY", 90)
        wait_until(lambda: sock.exists(), 30, "the supervisor's status socket")

        def merged_online() -> bool:
            snap = status(sock)
            return sorted(s.source for s in snap.sources if s.state == "online" and s.processed > 0) == ids

        wait_until(merged_online, 60, "every source online with results in the merged status")
        snap = status(sock)
        assert sorted(k.name for k in snap.sinks) == [
            f"{broker.url} (worker 0)",
            f"{broker.url} (worker 1)",
            "stdout (worker 0)",
            "stdout (worker 1)",
        ]
        assert all(k.connected for k in snap.sinks), "own MQTT client ids: neither worker kicks the other off"
        assert (tmp_path / "state" / "worker-0" / "mqtt-outbox.sqlite3").exists()
        assert (tmp_path / "state" / "worker-1" / "mqtt-outbox.sqlite3").exists()

        def merged_status() -> bool:
            notify.pump(0.5)
            return any("4/4 sources online" in f.get("STATUS", "") for _, f in notify.messages)

        wait_until(merged_status, 30, "sd_notify STATUS= from the merged snapshot", poll=0)
        scraped = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
        for sid in ids:  # one exporter, every worker's sources
            assert f'streamprep_frames_processed_total{{source="{sid}"}}' in scraped

        victim = expected["cam-a"]
        pid = pid_of(daemon, victim)
        before = {s.source: s.processed for s in status(sock).sources}
        os.kill(pid, signal.SIGKILL)
        daemon.wait_for(f"worker {victim} was killed by SIGKILL; restarting in", 30)
        new_pid = pid_of(daemon, victim, after=pid)
        assert new_pid != pid

        def recovered() -> bool:
            mine = [s for s in status(sock).sources if expected[s.source] == victim]
            return all(s.state == "online" and s.reconnects >= 1 and s.processed > before[s.source] for s in mine)

        wait_until(recovered, 60, "the restarted worker's sources online again, counts carried over")
        daemon.signal(signal.SIGTERM)
        assert daemon.finish(60) == 0, daemon.stderr
    finally:
        if daemon.process.poll() is None:
            daemon.process.kill()
    assert_no_traceback(daemon.stderr)
    lines = out.read_text().splitlines()
    results = [json.loads(line) for line in lines]  # every line whole: two workers' lines never mix
    for sid in ids:  # the supervisor's summary: every run of the worker, as many processed as written
        c = supervisor_counts(daemon.stderr, sid)
        assert c["processed"] == sum(1 for r in results if r["source"] == sid) > 0, daemon.stderr
    assert {r["source"] for r in results} == set(ids)
    assert len({r["id"] for r in results}) == len(results)


def test_reload_starts_a_worker_whose_share_was_empty_and_exit_statuses_combine(tmp_path: Path) -> None:
    first = plan(["cam-a"], 3)
    after = plan(["cam-a", "cam-b", "cam-b-file"], 3, first)
    assert after["cam-a"] == first["cam-a"] and sorted(after.values()) == [0, 1, 2], "one each after the reload"
    idle = after["cam-b"]
    cfg = tmp_path / "c.toml"
    base = f'fps = 5\nworkers = 3\n[[sources]]\nurl = "{LIVE}"\nid = "cam-a"\n'
    cfg.write_text(base)
    daemon = Daemon("run", "--config", str(cfg), "--out", str(tmp_path / "r.jsonl"))
    try:
        daemon.wait_for(f"worker {idle}: no sources (not started)")
        daemon.wait_for("worker(s) running", 60)
        missing = tmp_path / "missing.mp4"
        more = f'[[sources]]\nurl = "{LIVE}"\nid = "cam-b"\n[[sources]]\nurl = "{missing}"\nid = "cam-b-file"\n'
        cfg.write_text(base + more)
        daemon.signal(signal.SIGHUP)
        daemon.wait_for(f"worker {idle} started (pid", 30)
        daemon.wait_for("source cam-b: online", 60)
        daemon.wait_for("source cam-b-file: failed", 60)
        daemon.signal(signal.SIGTERM)
        code = daemon.finish(60)
    finally:
        if daemon.process.poll() is None:
            daemon.process.kill()
    assert_no_traceback(daemon.stderr)
    assert f"streamprep.run.supervisor [worker {after['cam-b']}]: source cam-b: online" in daemon.stderr
    assert "reloaded: started none; stopped none" in daemon.stderr, "cam-a's worker kept it running"
    assert code == 3, f"worker {after['cam-b-file']}'s missing file makes the whole exit 3:\n{daemon.stderr}"


def test_workers_is_checked() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "streamprep", "run", LIVE, "--workers", "0"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "streamprep: error: workers: Input should be greater than or equal to 1"
    ), done.stderr


def test_workers_stop_themselves_when_their_supervisor_is_killed(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    sources = "".join(f'[[sources]]\nurl = "{LIVE}"\nid = "{sid}"\n' for sid in ("cam-a", "cam-b"))
    cfg.write_text(f"fps = 5\nworkers = 2\n{sources}")
    # killed, the supervisor cannot remove its runtime directory: let it be under tmp_path
    daemon = Daemon(
        "run", "--config", str(cfg), "--out", str(tmp_path / "r.jsonl"), prefix=("env", f"TMPDIR={tmp_path}")
    )
    try:
        pids = [pid_of(daemon, k) for k in (0, 1)]
        daemon.wait_for("2 worker(s) running", 60)
        daemon.process.kill()  # no chance to stop them: the pipe to their stdin closes
        daemon.finish(30)
        wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids), 30, "both workers gone")
    finally:
        if daemon.process.poll() is None:
            daemon.process.kill()
    assert daemon.stderr.count("the worker supervisor is gone: stopping") == 2, daemon.stderr


def supervisor_counts(stderr: str, sid: str) -> dict[str, int]:
    """The supervisor's own end-of-run summary of ``sid`` (not a worker's: those lines say ``[worker K]``)."""
    mine = "\n".join(line for line in stderr.splitlines() if "[worker" not in line and "streamprep.ops.workers" in line)
    return assert_accounted(mine, sid)


def test_a_killed_worker_resumes_its_file_where_its_results_stopped_and_the_summary_adds_up(tmp_path: Path) -> None:
    expected, _ = replay(parse({"fps": 5, "device": "test", "sources": [{"url": str(DEMO), "id": "door"}]}))
    victim = plan(["door"], 2)["door"]
    cfg, out = tmp_path / "c.toml", tmp_path / "r.jsonl"
    cfg.write_text(f'fps = 5\ndevice = "test"\nworkers = 2\n[[sources]]\nurl = "{DEMO}"\nid = "door"\n')
    daemon = Daemon("run", "--config", str(cfg), "--out", str(out))

    def written() -> int:
        return len(out.read_text().splitlines()) if out.exists() else 0

    try:
        pid = pid_of(daemon, victim)
        wait_until(lambda: written() >= 15, 60, "15 results", poll=0.02)
        os.kill(pid, signal.SIGKILL)  # mid-run: 60 results in all
        daemon.wait_for(f"worker {victim} was killed by SIGKILL; restarting in", 30)
        code = daemon.finish(120)
    finally:
        if daemon.process.poll() is None:
            daemon.process.kill()
    assert code == 0, daemon.stderr
    assert_no_traceback(daemon.stderr)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    seqs = [r["seq"] for r in rows]
    assert len(seqs) == len(set(seqs)), f"no (source, seq) written twice: {sorted(seqs)}"
    for row in rows:
        for key in VOLATILE_FIELDS:
            row.pop(key)
    assert sorted(rows, key=lambda r: r["seq"]) == stable(expected), "the same results as a run never killed"
    c = supervisor_counts(daemon.stderr, "door")
    assert c["processed"] == len(rows) == len(expected), daemon.stderr
    again = counts(daemon.stderr.split(f"worker {victim} started (pid")[-1], "door")  # the restarted worker's own
    assert 0 < again["sampled"] < len(expected), "it resumed: it sampled only what was not written yet"
