"""The source supervisor: starts, restarts, reloads and stops sources, and keeps each one's trouble its own.

Every source runs in a task of its own that feeds the source's queue in its model branch. Whatever ends a
source — its end of file, a :class:`~streamprep.values.errors.SourceError`, an exception nobody expected, or a frame
of it that failed further down (``fail``) — ends that source alone: a file is reported ``failed`` with a
one-line reason (and the run exits 3 at the end), a live source is restarted after an exponential backoff
(one that never came up and answered that it is not there, :class:`~streamprep.sources.opening.GaveUpError`,
fails like a file).
Statuses pass through here on their way to the log, the metrics and the sinks.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Set
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace

from streamprep.config.resolve import ResolvedSource
from streamprep.config.validate import regions_problem
from streamprep.flow.backoff import Backoff, BackoffPolicy
from streamprep.flow.queues import BoundedQueue, QueueClosed
from streamprep.preprocess.geometry import Region
from streamprep.regions.source import RegionSettings
from streamprep.run.branch import ModelBranch
from streamprep.sources import make_source
from streamprep.sources.base import Source, SourceCounts
from streamprep.sources.opening import GaveUpError
from streamprep.values.errors import ConfigError, SourceError, SourceLostError, internal_error
from streamprep.values.frames import DropReason, Frame, SourceState, SourceStatus
from streamprep.values.metrics import Metrics
from streamprep.values.redact import redact_text

log = logging.getLogger(__name__)

_BAD_STATES = (SourceState.FAILED, SourceState.OFFLINE, SourceState.STALLED)
_RESTART_FIRST_S = 1.0
_HEALTHY_AFTER_S = 60.0  # a live source that ran this long starts its backoff afresh


@dataclass
class _Running:
    spec: ResolvedSource
    source: Source
    queue: BoundedQueue[Frame]
    task: asyncio.Task[None] | None = None
    started: float = field(default_factory=time.monotonic)
    failure: str | None = None  # set when a frame of it failed further down: the task is cancelled for it
    removed: bool = False  # stopped by a reload: what waits in its queue is dropped


class SourceSupervisor:
    def __init__(
        self,
        sources: tuple[ResolvedSource, ...],
        open_files: int,
        metrics: Metrics,
        branches: Mapping[str, ModelBranch],
        publish: Callable[[SourceStatus], None],
        decode_executor: Executor,
        decode_threads: int | None,
        custom: Mapping[str, Source] | None = None,
    ) -> None:
        self.sources = sources  # as configured now (a reload replaces them)
        self._open_files = open_files
        self.failures: list[SourceError] = []  # sources that ended failed (live sources are restarted instead)
        self.regions: dict[str, Region] = {}  # each source's roi
        self.region_settings: dict[str, RegionSettings] = {}  # each source's regions (full, tiles, motion)
        self._metrics = metrics
        self._branches = branches
        self._publish = publish
        self._executor = decode_executor
        self._decode_threads = decode_threads
        self._custom = dict(custom or {})  # ready-made sources by id (library use): started once, not restarted
        self._running: dict[str, _Running] = {}
        self._specs: dict[str, ResolvedSource] = {}  # every source started so far, as configured
        self._history: dict[str, list[SourceCounts]] = {}  # the counts of every run of each source
        self._restarts: dict[str, asyncio.Task[None]] = {}
        self._backoff: dict[str, Backoff] = {}
        self._restarted: collections.Counter[str] = collections.Counter()
        self._last_status: dict[str, tuple[SourceState, str]] = {}
        self._said: dict[str, SourceStatus] = {}  # the latest status each source gave itself
        self._came_up: set[str] = set()  # sources that have been online (as configured now)
        self._trouble: dict[str, str] = {}  # sources whose model's server is away, and why (see model_trouble)
        self._tg: asyncio.TaskGroup | None = None
        self._file_slots: asyncio.Semaphore | None = None
        self._stopping = False

    # -- life cycle
    def start(self, tg: asyncio.TaskGroup) -> None:
        self._tg = tg
        self._file_slots = asyncio.Semaphore(self._open_files)
        for spec in self.sources:
            self._start(spec)
        self._seal_if_done()

    def stop(self) -> None:
        """End every source (and every pending restart); frames already queued are still processed."""
        self._stopping = True
        for task in self._restarts.values():
            task.cancel()
        for run in self._running.values():
            if run.task is not None:
                run.task.cancel()
        self._seal_if_done()

    def live(self, sid: str) -> bool:
        run = self._running.get(sid)
        if run is not None:
            return run.source.live
        spec = self._specs.get(sid)
        return spec is not None and spec.live

    def spec(self, sid: str) -> ResolvedSource | None:
        """The source's settings as configured now (None once a reload removed it)."""
        run = self._running.get(sid)
        return run.spec if run is not None else self._specs.get(sid)

    def queued(self) -> dict[str, int]:
        return {sid: len(run.queue) for sid, run in self._running.items()}

    def sync(self) -> None:
        """Copy every source's own counts (all its runs) into the metrics."""
        for sid, runs in self._history.items():
            total = SourceCounts()
            for counts in runs:
                total.add(counts)
            c = self._metrics.source(sid)
            c.decoded, c.sampled, c.corrupt = total.decoded, total.sampled, total.corrupt
            c.reconnects = total.reconnects + self._restarted[sid]
            c.position_s, c.duration_s = runs[-1].position_s, runs[-1].duration_s
            c.source_drops = total.dropped

    # -- starting
    def _start(self, spec: ResolvedSource) -> None:
        assert self._tg is not None, "sources start inside the pipeline's run"
        sid = spec.id
        branch = self._branches.get(spec.model)
        if branch is None:
            raise ConfigError(f"source {sid}: model {spec.model!r} is not loaded")
        if (problem := regions_problem(spec, branch.model)) is not None:
            raise problem
        regions = spec.regions
        runs = self._history.setdefault(sid, [])
        first_seq = sum(c.sampled for c in runs)
        source = self._custom.pop(sid, None) or make_source(
            spec,
            self._on_status,
            first_seq=first_seq,
            executor=self._executor,
            decode_threads=self._decode_threads,
            file_slots=self._file_slots,
            came_up=sid in self._came_up,
        )
        runs.append(source.counts)
        self._metrics.source(sid).region_mode = regions.mode
        queue = branch.add_queue(spec.queue_size, spec.policy, source.live)
        run = _Running(spec, source, queue)
        self._running[sid] = run
        self._specs[sid] = spec
        self.region_settings[sid] = regions
        if spec.roi is not None:
            self.regions[sid] = spec.roi
        else:
            self.regions.pop(sid, None)
        run.task = self._tg.create_task(self._produce(run), name=f"source {sid}")

    def _seal_if_done(self) -> None:
        if not self._running and (self._stopping or not self._restarts):
            for branch in self._branches.values():
                branch.seal()

    # -- one source's task
    async def _produce(self, run: _Running) -> None:
        source, queue = run.source, run.queue
        counters = self._metrics.source(source.id)
        failure: str | None = None
        error: SourceError | None = None
        frames = source.frames()
        try:
            try:
                async for frame in frames:
                    dropped = queue.dropped
                    try:
                        await queue.put(frame)
                    except QueueClosed:
                        counters.drops[DropReason.STOPPED] += 1
                        break
                    except asyncio.CancelledError:
                        counters.drops[DropReason.STOPPED] += 1  # the frame in hand
                        raise
                    # a newer frame took its place: inference was busy, or its server is away (model_trouble)
                    why = DropReason.UNAVAILABLE if source.id in self._trouble else DropReason.QUEUE
                    counters.drops[why] += queue.dropped - dropped
            finally:
                aclose = getattr(frames, "aclose", None)
                if aclose is not None:
                    await aclose()
        except asyncio.CancelledError:
            failure = run.failure
            raise
        except SourceError as exc:
            error = exc
        except Exception as exc:
            log.debug("source %s failed", source.id, exc_info=True)
            failure = internal_error(exc)
        finally:
            self._ended(run, error or (SourceLostError(source.id, failure) if failure else None))

    def _ended(self, run: _Running, error: SourceError | None) -> None:
        sid = run.source.id
        if self._running.get(sid) is run:
            del self._running[sid]
        run.queue.close()
        if error is not None or run.removed:
            # a failed source's frames are not processed any more, nor a removed one's (its successor's
            # results would otherwise overtake them)
            self._metrics.source(sid).drops[DropReason.STOPPED] += run.queue.clear()
        if error is not None:
            self._failed(run, error)
        elif not run.removed and self._stopping:
            self._on_status(SourceStatus(sid, SourceState.STOPPED, "stopped"))
        self.sync()
        self._seal_if_done()

    def _failed(self, run: _Running, error: SourceError) -> None:
        sid = run.source.id
        gave_up = isinstance(error, GaveUpError)  # a live source that never came up: not there as configured
        if not run.source.live or gave_up or self._stopping or run.removed:
            self._on_status(SourceStatus(sid, SourceState.FAILED, error.reason))
            if not run.source.live or (gave_up and not run.removed):
                self.failures.append(error)
            return
        policy = BackoffPolicy(_RESTART_FIRST_S, run.spec.options.backoff.cap_s, healthy_after_s=_HEALTHY_AFTER_S)
        backoff = self._backoff.get(sid)
        if backoff is None or backoff.policy != policy:
            backoff = self._backoff[sid] = Backoff(policy)
        wait = backoff.next_wait(ran_s=time.monotonic() - run.started)
        self._on_status(SourceStatus(sid, SourceState.FAILED, f"{error.reason}; restarting in {wait:.1f} s"))
        assert self._tg is not None
        self._restarts[sid] = self._tg.create_task(self._restart(run.spec, wait), name=f"restart {sid}")

    async def _restart(self, spec: ResolvedSource, wait: float) -> None:
        sid = spec.id
        try:
            await asyncio.sleep(wait)
        finally:
            self._restarts.pop(sid, None)
        if not self._stopping and sid not in self._running:
            self._restarted[sid] += 1
            self._start(spec)

    def fail(self, sid: str, reason: str) -> None:
        """A frame of ``sid`` failed further down: end that source (it is restarted if live)."""
        run = self._running.get(sid)
        if run is None or run.failure is not None or run.task is None:
            return
        run.failure = reason
        run.task.cancel()

    # -- statuses
    def model_trouble(self, sources: Set[str], reason: str | None) -> None:
        """The model of ``sources`` cannot be reached (``reason``), or can again (None). While it cannot, a
        source that is connecting or online shows ``stalled`` with that reason: it decodes, but no result
        comes out. Recovered, each shows what it last said itself."""
        for sid in sources:
            if reason is None:
                self._trouble.pop(sid, None)
            else:
                self._trouble[sid] = reason
            said = self._said.get(sid)
            if said is not None:
                self._on_status(said)

    def _on_status(self, status: SourceStatus) -> None:
        self._said[status.source] = status
        if status.state is SourceState.ONLINE:
            self._came_up.add(status.source)
        trouble = self._trouble.get(status.source)
        if trouble is not None and status.state in (SourceState.CONNECTING, SourceState.ONLINE):
            status = replace(status, state=SourceState.STALLED, reason=trouble)
        key = (status.state, status.reason)
        if self._last_status.get(status.source) == key:
            return
        self._last_status[status.source] = key
        self._metrics.on_status(status)
        level = logging.WARNING if status.state in _BAD_STATES else logging.INFO
        reason = f" ({redact_text(status.reason)})" if status.reason else ""
        log.log(level, "source %s: %s%s", status.source, status.state.value, reason)
        self._publish(status)

    # -- reload
    def apply(self, sources: tuple[ResolvedSource, ...]) -> tuple[list[str], list[str]]:
        """Start the sources ``sources`` add or change, stop those they remove or change; the others run on
        untouched. Returns ``(started, stopped)`` source ids."""
        if self._tg is None or self._stopping:
            raise ConfigError("reload: the pipeline is not running")
        wanted = {spec.id: spec for spec in sources}
        for i, spec in enumerate(wanted.values()):
            if spec.model not in self._branches:
                raise ConfigError(f"reload: sources.{i}.model {spec.model!r} is not loaded; restart to add models")
        stopped = [sid for sid, run in self._running.items() if wanted.get(sid) != run.spec]
        stopped += [sid for sid in self._restarts if wanted.get(sid) != self._specs.get(sid) and sid not in stopped]
        # a file that already ended stays ended unless its settings changed
        started = [sid for sid, spec in wanted.items() if self._specs.get(sid) != spec or sid in stopped]
        for sid in stopped:
            with contextlib.suppress(KeyError):
                self._restarts.pop(sid).cancel()
            run = self._running.pop(sid, None)
            if run is not None and run.task is not None:
                run.removed = True
                run.task.cancel()
                self._on_status(SourceStatus(sid, SourceState.STOPPED, "removed by reload"))
        for sid in started:
            if self._specs.get(sid) != wanted[sid]:
                self._came_up.discard(sid)  # configured anew: it has to come up again to be waited for
            self._start(wanted[sid])
        self.sources = sources
        self._seal_if_done()
        return started, stopped
