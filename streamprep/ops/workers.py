"""``streamprep run --workers N``: all cores of a bigger box, N worker processes under one supervisor.

One Python process keeps about one core busy with what its threads cannot overlap (the event loop, the
per-frame bookkeeping, whatever holds the GIL). With many cameras on many cores, ``--workers N`` (or
``workers = N`` in the config) runs N copies of the pipeline, each in a process of its own owning a stable
share of the sources, and this module supervises them:

- **Shares** (:func:`plan`): each source goes to the first worker in its own order of preference (rendezvous
  hashing of its id) that has room, room being an equal share (⌈sources/N⌉), the sources placed in the
  order of their ids' hashes. So the shares are balanced (they differ by one source at most), and the same
  on every start and every machine, whatever order the config lists them in. On a reload, sources that stay
  stay with their worker; a new one goes to its first choice with room (the supervisor keeps the plan and
  hands it to the workers in ``shares.json``). A worker with no source is not started.
- **Each worker** is ``streamprep run`` with the same arguments plus ``--worker K/N``: it reads the same
  config, keeps its share (:func:`worker_config`), and has its own MQTT client id (``…-workerK``), its own
  outbox (``state_dir/worker-K``), its own status socket (in the supervisor's runtime directory), no metrics
  listener and no sd_notify of its own. Its JSON lines go up a pipe, and the supervisor writes them whole to
  ``--out`` (or stdout): lines of two workers never mix. Its logs carry ``[worker K]``.
- **The supervisor** merges the workers' snapshots (:func:`merge`) for the dashboard, ``streamprep top``
  (its status socket), the Prometheus metrics and sd_notify (READY once every worker reports, STATUS,
  WATCHDOG). It forwards SIGTERM/SIGINT (a second one stops the workers at once, as it would one process)
  and SIGHUP (each worker re-reads the config; a worker whose share was empty is started). A worker that
  dies (a signal, or exit status 1: a bug) is restarted after a backoff (1 s, doubling up to 30 s; afresh
  after a minute of health); its sources' counts carry over from its last snapshot, the frames it had in
  flight counted as ``stopped``. Other exit statuses are a worker's verdict and end it. The exit status of
  the whole is the most serious of the workers' (130, 1, 4, 3, 5, 2, in that order; see :func:`combine`).

Workers run in a session of their own, so a Ctrl-C in the terminal reaches only the supervisor, which
forwards it; under systemd, ``KillMode=mixed`` gives the stop signal to the supervisor alone. A worker whose
supervisor disappears stops itself (its stdin, a pipe from the supervisor, reaches end of file).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamprep.config.schema import Config
from streamprep.flow.threads import WriterThread
from streamprep.ops.service import Notifier, default_status_socket, read_status, status_companion, systemd_companion
from streamprep.values.errors import ConfigError, SinkError, StreamprepError
from streamprep.values.metrics import HistogramSnapshot, SinkSnapshot, Snapshot, SourceSnapshot
from streamprep.values.names import topic_level
from streamprep.values.redact import redact_text

log = logging.getLogger("streamprep.ops.workers")

RESTART_FIRST_S = 1.0
RESTART_CAP_S = 30.0
HEALTHY_AFTER_S = 60.0  # a worker that ran this long restarts with the first delay again
POLL_S = 1.0  # how often the supervisor reads the workers' snapshots
START_TIMEOUT_S = 300.0  # READY waits at most this long for every worker's first snapshot
_STOP_GRACE_S = 30.0  # after the drain deadline: then a worker still running is killed
_CHILD_ENV_DROP = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID")
_SEVERITY = (130, 1, 4, 3, 5, 2)  # the most serious exit status first (see combine)
_CHUNK = 1 << 16


def _hash(text: str) -> int:
    """A stable 64-bit hash (never Python's per-process ``hash``)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def preference(source_id: str, workers: int) -> list[int]:
    """The workers in ``source_id``'s order of preference: rendezvous (highest random weight) hashing."""
    return sorted(range(workers), key=lambda k: (-_hash(f"{k}/{source_id}"), k))


def plan(ids: Sequence[str], workers: int, previous: Mapping[str, int] | None = None) -> dict[str, int]:
    """Which worker owns each source id (see the module docstring). With ``previous`` (a reload), the ids
    it already placed keep their worker; only new ones are placed."""
    room = -(-len(ids) // workers)  # an equal share, rounded up
    load = [0] * workers
    found: dict[str, int] = {}
    wanted = set(ids)
    kept = {sid: k for sid, k in (previous or {}).items() if sid in wanted and 0 <= k < workers}
    for sid, k in kept.items():
        found[sid] = k
        load[k] += 1
    for sid in sorted((i for i in ids if i not in kept), key=lambda i: (_hash(i), i)):
        choices = preference(sid, workers)
        k = next((k for k in choices if load[k] < room), min(choices, key=lambda k: load[k]))
        found[sid] = k
        load[k] += 1
    return found


def shares(ids: Sequence[str], placed: Mapping[str, int], workers: int) -> list[list[str]]:
    """The source ids of each worker, in config order."""
    found: list[list[str]] = [[] for _ in range(workers)]
    for sid in ids:
        if sid in placed:
            found[placed[sid]].append(sid)
    return found


def plan_path(directory: Path) -> Path:
    return directory / "shares.json"


def write_plan(directory: Path, placed: Mapping[str, int]) -> None:
    """Atomically: a worker reading it never sees half of it."""
    tmp = plan_path(directory).with_suffix(".tmp")
    tmp.write_text(json.dumps(dict(placed), sort_keys=True))
    tmp.replace(plan_path(directory))


def read_plan(directory: Path) -> dict[str, int]:
    try:
        data = json.loads(plan_path(directory).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"--worker-dir {directory}: no plan of the shares ({exc})") from None
    return {str(k): int(v) for k, v in data.items()}


def parse_worker(spec: str) -> tuple[int, int]:
    """``K/N`` from ``--worker K/N``."""
    k, _, n = spec.partition("/")
    if not (k.isdigit() and n.isdigit() and 0 <= int(k) < int(n)):
        raise ConfigError(f"--worker {spec!r}: expected K/N with 0 <= K < N")
    return int(k), int(n)


def socket_path(directory: Path, index: int) -> Path:
    return directory / f"worker-{index}.sock"


def wants_json_lines(cfg: Config) -> bool:
    out = cfg.output
    return out.out is not None or out.mqtt is None


def worker_config(cfg: Config, index: int, placed: Mapping[str, int], directory: Path) -> Config:
    """Worker ``index``'s config: its share of the sources as ``placed`` says (their ids fixed as the whole
    config names them), its own outbox, MQTT client id and status socket; JSON lines to stdout (the
    supervisor's pipe). A source the plan does not know yet (the config changed again) waits for a reload."""
    ids = cfg.source_ids()
    kept = tuple(
        s.model_copy(update={"id": sid}) for s, sid in zip(cfg.sources, ids, strict=True) if placed.get(sid) == index
    )
    output = cfg.output.model_copy(update={"out": "-" if wants_json_lines(cfg) else None})
    if cfg.output.mqtt is not None:
        base = cfg.output.mqtt.client_id or f"streamprep-{topic_level(cfg.device)}"
        mqtt = cfg.output.mqtt.model_copy(update={"client_id": f"{base}-worker{index}"[:128]})
        output = output.model_copy(update={"mqtt": mqtt})
    update: dict[str, Any] = {
        "sources": kept,
        "output": output,
        "workers": 1,
        "metrics": cfg.metrics.model_copy(update={"listen": None}),
        "status": cfg.status.model_copy(update={"socket": socket_path(directory, index)}),
    }
    if cfg.state_dir is not None:
        update["state_dir"] = cfg.state_dir / f"worker-{index}"
    return cfg.model_copy(update=update)


def as_worker(
    cfg: Config, spec: str, directory: Path | None, reload: Callable[[], Config] | None
) -> tuple[Config, Callable[[], Config] | None]:
    """This process is worker ``spec`` (``K/N``): its config, and its reload (the same share of the config
    read anew). Its logs name it, and it stops when its supervisor is gone."""
    index, _ = parse_worker(spec)
    if directory is None:
        raise ConfigError("--worker needs --worker-dir")
    label_logs(index)
    watch_parent()
    mine = worker_config(cfg, index, read_plan(directory), directory)
    if reload is None:
        return mine, None
    again = reload
    return mine, lambda: worker_config(again(), index, read_plan(directory), directory)


def label_logs(index: int) -> None:
    """Every log record of this process names its worker (``streamprep.run.supervisor [worker 1]: ...``)."""
    factory = logging.getLogRecordFactory()

    def labelled(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        record.name = f"{record.name} [worker {index}]"
        return record

    logging.setLogRecordFactory(labelled)


def watch_parent() -> None:
    """A worker stops itself (SIGTERM) when its supervisor is gone: its stdin, a pipe, reaches end of file."""

    def watch() -> None:
        with contextlib.suppress(OSError):
            while os.read(0, 4096):
                pass
        log.warning("the worker supervisor is gone: stopping")
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent watch", daemon=True).start()


def combine(codes: Iterable[int]) -> int:
    """One exit status for all workers: the most serious one (130 stopped at once, 1 a bug, 4 a model,
    3 a source, 5 an output, 2 the config), else 0."""
    seen = set(codes)
    return next((code for code in _SEVERITY if code in seen), 0)


# -- merging snapshots


@dataclass(frozen=True)
class Carried:
    """What earlier runs of a restarted worker counted, per source: added to the current run's counts."""

    sources: dict[str, SourceSnapshot] = field(default_factory=dict)


def _add_source(a: SourceSnapshot, b: SourceSnapshot) -> SourceSnapshot:
    drops = {k: a.drops.get(k, 0) + b.drops.get(k, 0) for k in {*a.drops, *b.drops}}
    return dataclasses.replace(
        b,
        decoded=a.decoded + b.decoded,
        sampled=a.sampled + b.sampled,
        dropped=a.dropped + b.dropped,
        processed=a.processed + b.processed,
        corrupt=a.corrupt + b.corrupt,
        reconnects=a.reconnects + b.reconnects,
        drops=drops,
        sink_dropped=a.sink_dropped + b.sink_dropped,
    )


def settle(source: SourceSnapshot, why: str) -> SourceSnapshot:
    """A source of a worker that died, as its last snapshot said, its frames in flight counted as stopped
    (``sampled = processed + dropped`` holds again) and one more reconnect."""
    lost = max(0, source.sampled - source.processed - source.dropped)
    drops = dict(source.drops)
    drops["stopped"] = drops.get("stopped", 0) + lost
    return dataclasses.replace(
        source,
        state="failed",
        reason=why,
        dropped=source.dropped + lost,
        drops=drops,
        reconnects=source.reconnects + 1,
        queued=0,
    )


def merge(parts: Sequence[tuple[int, Snapshot | None]], carried: dict[int, Carried], notes: dict[int, str]) -> Snapshot:
    """One snapshot of all workers: ``parts`` are each worker's latest (None before its first); a source's
    counts include what earlier runs of its worker counted (``carried``); a worker with a note (it died, it
    restarts) shows its sources with that reason. Counters are sums; latency medians are weighted by
    results, 95th percentiles the largest of the workers' (an upper bound)."""
    sources: list[SourceSnapshot] = []
    sinks: list[SinkSnapshot] = []
    errors: list[str] = []
    histograms: dict[str, HistogramSnapshot] = {}
    totals = {"batches": 0, "frames": 0, "delivered": 0, "queued": 0}
    weighted = {"batch_fill": 0.0, "preprocess_p50_ms": 0.0, "inference_p50_ms": 0.0}
    highest = {"preprocess_p95_ms": 0.0, "inference_p95_ms": 0.0}
    draining, drain_left = False, 0.0
    for index, snap in parts:
        earlier = carried.get(index, Carried()).sources
        note = notes.get(index)
        current = {s.source: s for s in snap.sources} if snap is not None else {}
        for sid in [*current, *(s for s in earlier if s not in current)]:
            now = current.get(sid)
            merged = _add_source(earlier[sid], now) if sid in earlier and now is not None else now or earlier[sid]
            if note is not None:
                merged = dataclasses.replace(merged, state="failed", reason=note)
            sources.append(merged)
        if snap is None:
            continue
        sinks += [dataclasses.replace(k, name=f"{k.name} (worker {index})") for k in snap.sinks]
        errors += [f"{line[:9]}[worker {index}] {line[9:]}" for line in snap.errors]
        for key in totals:
            totals[key] += getattr(snap, key)
        weighted["batch_fill"] += snap.batch_fill * snap.batches
        for key in ("preprocess_p50_ms", "inference_p50_ms"):
            weighted[key] += getattr(snap, key) * snap.frames
        for key in highest:
            highest[key] = max(highest[key], getattr(snap, key))
        for name, h in snap.histograms.items():
            prev = histograms.get(name)
            histograms[name] = (
                h
                if prev is None
                else HistogramSnapshot(
                    h.bounds,
                    tuple(a + b for a, b in zip(prev.counts, h.counts, strict=True)),
                    prev.total + h.total,
                    prev.count + h.count,
                )
            )
        draining = draining or snap.draining
        drain_left = max(drain_left, snap.drain_left_s)
    batches, frames = totals["batches"], totals["frames"]
    return Snapshot(
        at=time.monotonic(),
        sources=tuple(sources),
        sinks=tuple(sinks),
        batches=batches,
        frames=frames,
        delivered=totals["delivered"],
        queued=totals["queued"],
        batch_fill=weighted["batch_fill"] / batches if batches else 0.0,
        preprocess_p50_ms=weighted["preprocess_p50_ms"] / frames if frames else 0.0,
        preprocess_p95_ms=highest["preprocess_p95_ms"],
        inference_p50_ms=weighted["inference_p50_ms"] / frames if frames else 0.0,
        inference_p95_ms=highest["inference_p95_ms"],
        errors=tuple(sorted(errors)[-8:]),
        histograms=histograms,
        draining=draining,
        drain_left_s=drain_left,
    )


# -- the supervisor


@dataclass
class _Worker:
    index: int
    sources: list[str]
    process: asyncio.subprocess.Process | None = None
    task: asyncio.Task[None] | None = None
    latest: Snapshot | None = None
    carried: Carried = field(default_factory=Carried)
    note: str | None = None  # why its sources show failed (it died and waits to restart)
    backoff: float = RESTART_FIRST_S
    restarts: int = 0
    code: int | None = None  # its final exit status, once it ended for good


def _describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
        return f"was killed by signal {-code}"
    return f"exited with status {code}"


class WorkerPool:
    """The supervisor of ``count`` workers running ``argv`` (``streamprep``'s own arguments)."""

    def __init__(
        self,
        cfg: Config,
        count: int,
        argv: Sequence[str],
        reload: Callable[[], Config] | None,
        directory: Path,
        dashboard: bool = False,
    ) -> None:
        self.cfg = cfg
        self.count = count
        self._argv = list(argv)
        self._reload = reload
        self.directory = directory
        self._dashboard = dashboard
        ids = cfg.source_ids()
        self.plan = plan(ids, count)
        write_plan(directory, self.plan)
        self.workers = [_Worker(k, share) for k, share in enumerate(shares(ids, self.plan, count))]
        self.notifier = Notifier()
        self._stopping = False
        self.aborted = False
        self._stop = asyncio.Event()
        self._writer: WriterThread | None = None
        self._out_fd: int | None = None
        self.output_failure: str | None = None
        self._tg: asyncio.TaskGroup | None = None

    # -- what the others read
    def snapshot(self) -> Snapshot:
        parts = [(w.index, w.latest) for w in self.workers if w.latest is not None or w.carried.sources]
        carried = {w.index: w.carried for w in self.workers}
        notes = {w.index: w.note for w in self.workers if w.note is not None}
        return merge(parts, carried, notes)

    # -- running
    async def run(self, signals: Any) -> int:
        """Start the workers, supervise them until all have ended, and return the combined exit status."""
        loop = asyncio.get_running_loop()
        signals.attach(loop, self._on_stop, self._on_reload)
        try:
            await self._open_output()
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                for w in self.workers:
                    if w.sources:
                        log.info("worker %d: %d source(s): %s", w.index, len(w.sources), ", ".join(w.sources))
                        w.task = tg.create_task(self._keep(w), name=f"worker {w.index}")
                    else:
                        log.info("worker %d: no sources (not started)", w.index)
                poller = tg.create_task(self._poll(), name="worker snapshots")
                helpers = tg.create_task(self._companions(), name="companions")
                await self._all_ended()
                poller.cancel()
                helpers.cancel()
        finally:
            signals.detach(loop)
            self.notifier.close()
            await self._close_output()
        codes = [w.code for w in self.workers if w.code is not None]
        code = combine(codes)
        if self.aborted:
            code = 130
        elif code == 0 and self.output_failure is not None:
            code = 5
        restarts = sum(w.restarts for w in self.workers)
        shown = ", ".join(f"worker {w.index}: {w.code}" for w in self.workers if w.code is not None)
        log.info("workers ended (%s; %d restart(s)): exit status %d", shown or "none started", restarts, code)
        if self.output_failure is not None:
            print(f"streamprep: error: {redact_text(self.output_failure)}", file=sys.stderr)
        return code

    async def _all_ended(self) -> None:
        while True:
            tasks = [w.task for w in self.workers if w.task is not None and not w.task.done()]
            if not tasks:
                return
            await asyncio.wait(tasks)

    def _command(self, w: _Worker) -> list[str]:
        return [
            sys.executable,
            "-m",
            "streamprep",
            *self._argv,
            "--worker",
            f"{w.index}/{self.count}",
            "--worker-dir",
            str(self.directory),
        ]

    async def _keep(self, w: _Worker) -> None:
        """Run worker ``w``; restart it when it dies, until it ends for good or the run stops."""
        env = {k: v for k, v in os.environ.items() if k not in _CHILD_ENV_DROP}
        while True:
            started = time.monotonic()
            w.latest = None
            with contextlib.suppress(FileNotFoundError):
                socket_path(self.directory, w.index).unlink()
            w.process = await asyncio.create_subprocess_exec(
                *self._command(w),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE if self._writer is not None else asyncio.subprocess.DEVNULL,
                stderr=None,
                env=env,
                start_new_session=True,
            )
            log.info("worker %d started (pid %d)", w.index, w.process.pid)
            if self._stopping:  # a stop came while it started: pass it on
                w.process.send_signal(signal.SIGTERM)
            copier = asyncio.create_task(self._copy(w.process)) if w.process.stdout is not None else None
            code = await w.process.wait()
            if copier is not None:
                await copier
            ran = time.monotonic() - started
            verdict = code >= 0 and code != 1  # 1 is a bug and a signal a crash: those are restarted
            if self._stopping or verdict:
                level = logging.INFO if code in (0, 130) else logging.ERROR
                log.log(level, "worker %d %s", w.index, _describe_exit(code))
                w.code = code if code >= 0 else 1
                self._final(w)
                return
            delay = RESTART_FIRST_S if ran > HEALTHY_AFTER_S else w.backoff
            w.backoff = min(delay * 2, RESTART_CAP_S)
            why = f"worker {w.index} {_describe_exit(code)}; restarting in {delay:.1f} s"
            log.error("%s (its frames in flight are lost, counted as stopped)", why)
            self._final(w, why)
            w.note = why
            try:
                await asyncio.wait_for(self._stop.wait(), delay)
                w.code = 1
                return
            except TimeoutError:
                pass
            w.note = None
            w.restarts += 1

    def _final(self, w: _Worker, why: str | None = None) -> None:
        """Fold the worker's last snapshot into what its next run adds to (``why``: it died)."""
        if w.latest is None:
            return
        settled = {s.source: settle(s, why) if why else s for s in w.latest.sources}
        merged = dict(w.carried.sources)
        for sid, s in settled.items():
            merged[sid] = _add_source(merged[sid], s) if sid in merged else s
        w.carried = Carried(merged)
        w.latest = None

    async def _poll(self) -> None:
        while True:
            for w in self.workers:
                if w.process is None or w.process.returncode is not None:
                    continue
                path = socket_path(self.directory, w.index)
                if not path.exists():
                    continue
                try:
                    w.latest = await read_status(path, timeout=2.0)
                except (OSError, TimeoutError, ValueError, KeyError) as exc:
                    log.debug("worker %d: no snapshot: %s", w.index, exc)
            await asyncio.sleep(POLL_S)

    async def _ready(self) -> None:
        """Every started worker has reported once, or ended (bounded by START_TIMEOUT_S)."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            pending = [w for w in self.workers if w.task is not None and not w.task.done() and w.latest is None]
            if not pending:
                return
            await asyncio.sleep(0.2)
        log.warning("not every worker reported within %.0f s; ready anyway", START_TIMEOUT_S)

    async def _companions(self) -> None:
        """The helpers the single process has, reading merged snapshots, once every worker runs."""
        await self._ready()
        helpers: list[Any] = []
        if self.notifier.enabled:
            helpers.append(systemd_companion(self.notifier, self.snapshot))
        path = self.cfg.status.socket or default_status_socket()
        if path is not None:
            helpers.append(status_companion(path, self.snapshot))
        if self.cfg.metrics.listen:
            from streamprep.ops.exporter import metrics_companion

            helpers.append(metrics_companion(self.cfg.metrics.listen, self.snapshot))
        if self._dashboard:
            from rich.console import Console

            from streamprep.ops.dashboard import dashboard_companion

            helpers.append(dashboard_companion(Console(stderr=True)))
        log.info("%d worker(s) running", sum(w.task is not None and not w.task.done() for w in self.workers))
        async with asyncio.TaskGroup() as tg:
            for i, helper in enumerate(helpers):
                tg.create_task(helper(self), name=f"companion {i}")

    # -- results: whole lines from every worker to one output
    async def _open_output(self) -> None:
        if not wants_json_lines(self.cfg):
            return
        target = self.cfg.output.out or "-"
        writer = WriterThread(f"write {target}")

        def open_target() -> int:
            if target == "-":
                return sys.stdout.fileno()
            return os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)

        try:
            self._out_fd = await asyncio.wrap_future(writer.submit(open_target))
        except OSError as exc:
            writer.shutdown(wait=False)
            raise SinkError(f"output file {target}: {exc.strerror or exc}") from None
        self._writer = writer

    def _write(self, data: bytes) -> None:
        assert self._out_fd is not None
        view = memoryview(data)
        while view:
            view = view[os.write(self._out_fd, view) :]

    async def _copy(self, process: asyncio.subprocess.Process) -> None:
        """A worker's JSON lines to the output, in whole lines (a worker's lines keep their order)."""
        assert process.stdout is not None and self._writer is not None
        rest = b""
        while chunk := await process.stdout.read(_CHUNK):
            cut = chunk.rfind(b"\n") + 1
            if not cut:
                rest += chunk
                continue
            data, rest = rest + chunk[:cut], chunk[cut:]
            if self.output_failure is not None:
                continue  # keep reading: a worker must never block on a dead output
            try:
                await asyncio.wrap_future(self._writer.submit(self._write, data))
            except OSError as exc:
                target = self.cfg.output.out or "-"
                self.output_failure = f"output {'stdout' if target == '-' else target}: {exc.strerror or exc}"
                log.error("%s; results are dropped from now on", self.output_failure)

    async def _close_output(self) -> None:
        writer, self._writer = self._writer, None
        if writer is None:
            return
        fd, self._out_fd = self._out_fd, None
        if fd is not None and fd != sys.stdout.fileno():
            with contextlib.suppress(OSError):
                await asyncio.wrap_future(writer.submit(os.close, fd))
        writer.shutdown(wait=False)

    # -- signals
    def _signal_all(self, sig: signal.Signals) -> None:
        for w in self.workers:
            if w.process is not None and w.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    w.process.send_signal(sig)

    def _on_stop(self, sig: signal.Signals) -> None:
        if self._stopping:
            log.warning("second %s: stopping the workers now", sig.name)
            self.aborted = True
            self._signal_all(signal.SIGTERM)
            return
        log.info("%s received: stopping the workers", sig.name)
        self._stopping = True
        self._stop.set()
        self.notifier.notify(stopping=1)
        self._signal_all(signal.SIGTERM)
        asyncio.get_running_loop().call_later(self.cfg.drain_timeout_s + _STOP_GRACE_S, self._kill_late)

    def _kill_late(self) -> None:
        late = [w for w in self.workers if w.process is not None and w.process.returncode is None]
        for w in late:
            log.error(
                "worker %d did not stop within its drain deadline and %.0f s more: killed", w.index, _STOP_GRACE_S
            )
            assert w.process is not None
            with contextlib.suppress(ProcessLookupError):
                w.process.kill()

    def _on_reload(self) -> None:
        if self._stopping:
            return
        asyncio.get_running_loop().create_task(self._apply_reload())

    async def _apply_reload(self) -> None:
        if self._reload is None:
            log.warning("SIGHUP: no --config to reload; ignored")
            return
        try:
            cfg = await asyncio.to_thread(self._reload)
        except StreamprepError as exc:
            log.error("reload refused, the workers run on as before: %s", redact_text(str(exc)))
            return
        if cfg.workers != self.cfg.workers:
            log.warning("reload: workers = %d needs a restart; %d run on", cfg.workers, self.count)
        self.cfg = cfg.model_copy(update={"workers": self.cfg.workers})
        ids = cfg.source_ids()
        self.plan = plan(ids, self.count, self.plan)  # sources that stay keep their worker
        write_plan(self.directory, self.plan)
        self._signal_all(signal.SIGHUP)
        for w, share in zip(self.workers, shares(ids, self.plan, self.count), strict=True):
            w.sources = share
            if share and (w.task is None or w.task.done()) and self._tg is not None and not self._stopping:
                log.info("worker %d: %d source(s) after reload: %s", w.index, len(share), ", ".join(share))
                w.code = None
                w.task = self._tg.create_task(self._keep(w), name=f"worker {w.index}")
        log.info("reload: passed on to the workers")


def runtime_directory() -> Path:
    """Where the workers' status sockets live: ``$RUNTIME_DIRECTORY/workers`` under systemd, else a new
    temporary directory (removed at the end)."""
    runtime = os.environ.get("RUNTIME_DIRECTORY")
    if runtime:
        path = Path(runtime.split(":")[0]) / "workers"
        path.mkdir(parents=True, exist_ok=True)
        return path
    return Path(tempfile.mkdtemp(prefix="streamprep-workers-"))


def supervise(
    cfg: Config,
    count: int,
    argv: Sequence[str],
    signals: Any,
    reload: Callable[[], Config] | None,
    dashboard: bool = False,
) -> int:
    """Run ``count`` workers (see the module docstring) and return the exit status."""
    directory = runtime_directory()
    pool = WorkerPool(cfg, count, argv, reload, directory, dashboard)
    try:
        signals.checkpoint()
        return asyncio.run(pool.run(signals))
    finally:
        signals.settle()
        if not os.environ.get("RUNTIME_DIRECTORY"):
            shutil.rmtree(directory, ignore_errors=True)
