"""The supervisor of ``--workers``: starts, watches, restarts and stops the worker processes."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamprep.config.resolve import resolve_sources
from streamprep.config.schema import Config
from streamprep.flow.backoff import Backoff, BackoffPolicy
from streamprep.flow.threads import WriterThread
from streamprep.ops.service import Notifier, default_status_socket, read_status, status_companion, systemd_companion
from streamprep.ops.signals import StopPolicy
from streamprep.ops.workers._child import wants_json_lines
from streamprep.ops.workers._counts import Carried, add_source, describe_exit, merge, settle
from streamprep.ops.workers._shares import (
    final_path,
    plan,
    read_final,
    resume_path,
    runtime_directory,
    shares,
    socket_path,
    write_atomically,
    write_plan,
)
from streamprep.values.errors import SinkError, StreamprepError, most_serious, print_error
from streamprep.values.frames import SourceState
from streamprep.values.metrics import Snapshot, SourceSnapshot
from streamprep.values.redact import redact_text

log = logging.getLogger("streamprep.ops.workers")


# a worker that died restarts after 1 s, doubling up to 30 s; one that ran a minute with the first delay again
RESTART = BackoffPolicy(first_s=1.0, cap_s=30.0, jitter=0.0, healthy_after_s=60.0)
POLL_S = 1.0  # how often the supervisor reads the workers' snapshots
START_TIMEOUT_S = 300.0  # READY waits at most this long for every worker's first snapshot
_STOP_GRACE_S = 30.0  # after the drain deadline: then a worker still running is killed
_CHILD_ENV_DROP = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID")
_CHUNK = 1 << 16


@dataclass
class _Worker:
    index: int
    sources: list[str]
    process: asyncio.subprocess.Process | None = None
    task: asyncio.Task[None] | None = None
    latest: Snapshot | None = None
    carried: Carried = field(default_factory=Carried)
    note: str | None = None  # why its sources show failed (it died and waits to restart)
    backoff: Backoff = field(default_factory=lambda: Backoff(RESTART))
    restarts: int = 0
    code: int | None = None  # its final exit status, once it ended for good
    resumed: dict[str, int] = field(default_factory=dict)  # the seq each file of this run resumed at
    written: collections.Counter[str] = field(default_factory=collections.Counter)  # results of this run


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
        self.sources = resolve_sources(cfg)
        ids = [s.id for s in self.sources]
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
        self.last_seq: dict[str, int] = {}  # the highest seq written, by source (every run of its worker)

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
        policy = StopPolicy(log, self._drain, self._abort, self._reload_all, what=" the workers")
        signals.attach(loop, policy.on_stop, policy.on_reload)
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
        code = most_serious(codes)
        if self.aborted:
            code = 130
        elif code == 0 and self.output_failure is not None:
            code = 5
        from streamprep.ops.daemon import summarize_sources

        summarize_sources(self.snapshot().sources, quiet=self._dashboard, logger=log)
        restarts = sum(w.restarts for w in self.workers)
        shown = ", ".join(f"worker {w.index}: {w.code}" for w in self.workers if w.code is not None)
        log.info("workers ended (%s; %d restart(s)): exit status %d", shown or "none started", restarts, code)
        if self.output_failure is not None:
            print_error(self.output_failure)
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
            for stale in (socket_path(self.directory, w.index), final_path(self.directory, w.index)):
                with contextlib.suppress(FileNotFoundError):
                    stale.unlink()
            w.resumed = {sid: self.last_seq[sid] + 1 for sid in w.sources if self._resumable(sid)}
            w.written = collections.Counter()
            write_atomically(resume_path(self.directory, w.index), w.resumed)
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
            copier = asyncio.create_task(self._copy(w)) if w.process.stdout is not None else None
            code = await w.process.wait()
            if copier is not None:
                await copier
            ran = time.monotonic() - started
            verdict = code >= 0 and code != 1  # 1 is a bug and a signal a crash: those are restarted
            if self._stopping or verdict:
                level = logging.INFO if code in (0, 130) else logging.ERROR
                log.log(level, "worker %d %s", w.index, describe_exit(code))
                w.code = code if code >= 0 else 1
                self._final(w)
                return
            delay = w.backoff.next_wait(ran_s=ran)
            why = f"worker {w.index} {describe_exit(code)}; restarting in {delay:.1f} s"
            resuming = [sid for sid in w.sources if self._resumable(sid)]
            log.error(
                "%s (its frames in flight are lost, counted as stopped%s)",
                why,
                "; its files resume after their last result written: " + ", ".join(resuming) if resuming else "",
            )
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

    def _resumable(self, sid: str) -> bool:
        """A file replayed (not live) whose results the supervisor writes: a restart resumes it."""
        if self._writer is None or sid not in self.last_seq:
            return False
        return any(s.id == sid and not s.live for s in self.sources)

    def _final(self, w: _Worker, why: str | None = None) -> None:
        """Fold the run that ended into what the worker's next run adds to (``why``: it died). Its own
        end-of-run counts when it left them (it ended by itself), else its last snapshot settled against
        the results the supervisor wrote for it."""
        final = read_final(self.directory, w.index)
        last = final or w.latest
        w.latest = None
        found = {s.source: s for s in last.sources} if last is not None else {}
        if final is None and (found or w.written):
            how = why or (describe_exit(w.process.returncode or 0) if w.process is not None else "ended")
            for sid in [*found, *(sid for sid in w.written if sid not in found)]:
                s = found.get(sid) or SourceSnapshot(sid, SourceState.FAILED, how, 0, 0, 0, 0, 0, 0, 0, 0.0, 0.0)
                delivered = self.last_seq.get(sid, -1) + 1 - w.resumed.get(sid, 0) if self._resumable(sid) else None
                state = SourceState.FAILED if why else SourceState.STOPPED
                written = w.written[sid] if self._writer is not None else None  # MQTT alone: not seen here
                found[sid] = settle(s, how, written, delivered, state)
        if not found:
            return
        merged = dict(w.carried.sources)
        for sid, s in found.items():
            merged[sid] = add_source(merged[sid], s) if sid in merged else s
        w.carried = Carried(merged)

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

    def _write(self, data: bytes) -> dict[str, tuple[int, int]]:
        """Write whole lines (in the writer thread); what they hold: results and highest seq by source."""
        assert self._out_fd is not None
        view = memoryview(data)
        while view:
            view = view[os.write(self._out_fd, view) :]
        found: dict[str, tuple[int, int]] = {}
        for line in data.splitlines():
            with contextlib.suppress(ValueError, KeyError, TypeError):
                item = json.loads(line)
                if isinstance(item, dict) and str(item.get("schema", "")).startswith("streamprep.result/"):
                    sid, seq = str(item["source"]), int(item["seq"])
                    n, top = found.get(sid, (0, -1))
                    found[sid] = (n + 1, max(top, seq))
        return found

    async def _copy(self, w: _Worker) -> None:
        """A worker's JSON lines to the output, in whole lines (a worker's lines keep their order), counted
        by source (``processed`` of a run that dies, and where its files resume)."""
        process = w.process
        assert process is not None and process.stdout is not None and self._writer is not None
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
                found = await asyncio.wrap_future(self._writer.submit(self._write, data))
            except OSError as exc:
                target = self.cfg.output.out or "-"
                self.output_failure = f"output {'stdout' if target == '-' else target}: {exc.strerror or exc}"
                log.error("%s; results are dropped from now on", self.output_failure)
                continue
            for sid, (n, top) in found.items():
                w.written[sid] += n
                self.last_seq[sid] = max(self.last_seq.get(sid, -1), top)

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

    def _drain(self, _sig: signal.Signals) -> None:
        self._stopping = True
        self._stop.set()
        self.notifier.notify(stopping=1)
        self._signal_all(signal.SIGTERM)
        asyncio.get_running_loop().call_later(self.cfg.drain_timeout_s + _STOP_GRACE_S, self._kill_late)

    def _abort(self, _sig: signal.Signals) -> None:
        self.aborted = True
        self._signal_all(signal.SIGTERM)

    def _kill_late(self) -> None:
        late = [w for w in self.workers if w.process is not None and w.process.returncode is None]
        for w in late:
            log.error(
                "worker %d did not stop within its drain deadline and %.0f s more: killed", w.index, _STOP_GRACE_S
            )
            assert w.process is not None
            with contextlib.suppress(ProcessLookupError):
                w.process.kill()

    def _reload_all(self) -> None:
        asyncio.get_running_loop().create_task(self._apply_reload())

    async def _apply_reload(self) -> None:
        if self._reload is None:
            log.warning("SIGHUP: no --config to reload; ignored")
            return
        try:
            cfg = await asyncio.to_thread(self._reload)
            sources = resolve_sources(cfg)
        except StreamprepError as exc:
            log.error("reload refused, the workers run on as before: %s", redact_text(str(exc)))
            return
        if cfg.workers != self.cfg.workers:
            log.warning("reload: workers = %d needs a restart; %d run on", cfg.workers, self.count)
        self.cfg = cfg.model_copy(update={"workers": self.cfg.workers})
        self.sources = sources
        ids = [s.id for s in sources]
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
