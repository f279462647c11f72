"""The pipeline: wires the source supervisor, one branch per model and the fan-out to the sinks under one
TaskGroup, and owns the one drain deadline.

    SourceSupervisor ──► per-source queues ──► ModelBranch (batch, prepare, infer, decode) ──► Fanout ──► sinks

Stopping: ``stop`` ends the sources; the branches finish the frames already taken and the sinks deliver,
all by a single deadline ``drain_timeout`` seconds after the stop. What is still in flight then is dropped
and counted (``stopped``). Cancelling ``run`` (a second signal) stops at once, after counting what it
abandons. Either way ``sampled = processed + dropped`` holds for every source afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from streamprep.config.resolve import ResolvedSource, resolve_sources
from streamprep.config.schema import DEFAULT_MODEL_KEY, Config
from streamprep.config.validate import regions_problem
from streamprep.events.engine import EventHub, SourceGeometry
from streamprep.flow.threads import cores, pool
from streamprep.inference.model import LoadedModel
from streamprep.run.branch import ModelBranch
from streamprep.run.cascade import Cascade
from streamprep.run.fanout import RESULTS_QUEUE, Fanout
from streamprep.run.supervisor import SourceSupervisor
from streamprep.sinks.base import Sink
from streamprep.sources.base import Source
from streamprep.values.errors import SourceError
from streamprep.values.frames import SourceStatus
from streamprep.values.metrics import Metrics, Snapshot

log = logging.getLogger(__name__)

_SHUTDOWN_TIMEOUT = 3.0  # for each sink to let go after the run was cut short


@dataclass(frozen=True)
class RunReport:
    metrics: Metrics
    snapshot: Snapshot
    failures: tuple[SourceError, ...]  # sources that failed
    sink_failures: tuple[str, ...]  # sinks that failed (their results were dropped from then on)
    stopped: bool  # a stop was requested
    cut_short: bool  # the drain deadline passed with work still in flight


Companion = Callable[["Pipeline"], Coroutine[Any, Any, None]]


class Pipeline:
    """Sources → model branches → sinks. ``models`` maps each model key of the config (``default`` for
    ``[model]``, else the keys of ``[models.NAME]``) that some source uses to its loaded model. The sinks
    must be open; the pipeline closes and shuts them down."""

    def __init__(
        self,
        cfg: Config,
        models: LoadedModel | Mapping[str, LoadedModel],
        sinks: list[Sink],
        drain_timeout: float | None = None,
        *,
        sources: Mapping[str, Source] | None = None,
        keep_frames: bool = False,
        sink_queue: int = RESULTS_QUEUE,
        resolved: Sequence[ResolvedSource] | None = None,
    ) -> None:
        """``sources``: ready-made sources (the :class:`~streamprep.sources.base.Source` seam), by the id a
        ``[[sources]]`` entry of ``cfg`` gives them; ``keep_frames``: results carry their decoded frame;
        ``sink_queue``: results that may wait for each sink (live ones beyond it are dropped there);
        ``resolved``: the sources of ``cfg`` already resolved (:func:`~streamprep.config.resolve.resolve_sources`)."""
        self.cfg = cfg
        self.models = {DEFAULT_MODEL_KEY: models} if isinstance(models, LoadedModel) else dict(models)
        self.metrics = Metrics()
        self.run_id = secrets.token_hex(6)  # makes every result id unique across runs
        self.drain_timeout = cfg.drain_timeout_s if drain_timeout is None else drain_timeout
        self._stopping = False
        self._cut_short = False
        self._drain_deadline: float | None = None  # loop time by which a stop must be complete
        self._delivering = False  # every result is made: the sinks deliver the rest
        # a ready-made source says itself whether it is live (its queue: the latest frame wins, or every frame)
        self._live = {sid: source.live for sid, source in (sources or {}).items()}
        resolved = tuple(resolved) if resolved is not None else resolve_sources(cfg, self._live)
        for spec in resolved:  # tiles and motion need a detector: refused before anything starts
            model = self.models.get(spec.model)
            if model is not None and (problem := regions_problem(spec, model)) is not None:
                raise problem
        files = sum(not s.live for s in resolved)
        self._decode = pool("decode", cores())
        self._prepare = pool("prepare", len(self.models))
        # a remote model overlaps batches: one thread per request it may have on its way
        self._infer = {key: pool(f"infer-{key}", model.in_flight) for key, model in self.models.items()}
        self.fanout = Fanout(
            sinks, self.metrics, self._is_live, cfg.events is None or cfg.events.results, queue_size=sink_queue
        )
        self.branches: dict[str, ModelBranch] = {}
        self.supervisor = SourceSupervisor(
            resolved,
            cfg.limits.open_files,
            self.metrics,
            self.branches,
            self.fanout.status,
            self._decode,
            # many files at once: one FFmpeg thread each, the pool spreads them over the cores
            decode_threads=1 if files >= cores() else None,
            custom=sources,
        )
        # [events]: tracking, zones, lines and events per source, made where results are made
        self.events = EventHub(cfg.events, self._geometry, self.run_id, cfg.state_dir) if cfg.events else None
        for key, model in self.models.items():
            self.branches[key] = ModelBranch(
                key,
                model,
                cfg.model_for(key).max_wait_ms / 1000.0,
                self.metrics,
                self.run_id,
                self.supervisor.regions,
                self.supervisor.fail,
                self._prepare,
                self._infer[key],
                self.events,
                keep_frames,
                live=self._is_live,
                on_trouble=self.supervisor.model_trouble,
                then=Cascade(key, model.then, self.metrics, model.max_batch) if model.then else None,
                region_settings=self.supervisor.region_settings,
            )

    @property
    def sources(self) -> tuple[ResolvedSource, ...]:
        """Every source as configured now, resolved (a reload replaces them)."""
        return self.supervisor.sources

    @property
    def sinks(self) -> list[Sink]:
        return self.fanout.sinks

    def _is_live(self, sid: str) -> bool:
        return self.supervisor.live(sid)

    def _geometry(self, sid: str) -> SourceGeometry:
        """The zones and lines of a source as configured now (a reload may change them)."""
        spec = self.supervisor.spec(sid)
        return (spec.zones, spec.lines) if spec is not None else ((), ())

    async def run(self, stop: asyncio.Event | None = None, companions: Sequence[Companion] = ()) -> RunReport:
        """Run until every source has ended (or ``stop`` is set) and every result is delivered.

        ``companions`` (status socket, metrics, watchdog, dashboard...) run in the same TaskGroup and are
        cancelled once delivery is over.
        """
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.TaskGroup() as tg:
                self.fanout.start(tg)
                stages = [task for b in self.branches.values() for task in b.start(tg, self.fanout.put)]
                self.supervisor.start(tg)
                helpers = [tg.create_task(c(self), name=f"companion {i}") for i, c in enumerate(companions)]
                deadline: list[float] = []
                watcher = tg.create_task(self._watch(stop, stages, deadline), name="stop watcher")
                if stages:
                    await asyncio.wait(stages)
                if not deadline:  # every source ended: what is left is delivered by the same kind of deadline
                    deadline.append(loop.time() + self.drain_timeout)
                self._drain_deadline = deadline[0]
                self._delivering = True
                watcher.cancel()
                self._account_cut_short()
                if self.events is not None:  # every source ended: the visits still open end now
                    await self.fanout.put_events(await loop.run_in_executor(self._prepare, self.events.finish))
                self._final_statuses()
                await self.fanout.finish(deadline[0])
                self.fanout.abandon()
                for task in helpers:
                    task.cancel()
        except asyncio.CancelledError:
            await self._abort()
            raise
        finally:
            if self.events is not None:
                await asyncio.to_thread(self.events.close)  # snapshot files still queued are written
            self._close_executors()
        self._account_cut_short()  # anything a source put in after the branches ended
        return self.report()

    def _final_statuses(self) -> None:
        """Every source's last state once more, with its final counts (retained by MQTT)."""
        for s in self.snapshot().sources:
            self.fanout.status(SourceStatus(s.source, s.state, s.reason, counts=s.status_counts()))

    def report(self) -> RunReport:
        return RunReport(
            self.metrics,
            self.snapshot(),
            tuple(self.supervisor.failures),
            tuple(self.fanout.failures()),
            self._stopping,
            self._cut_short,
        )

    async def _watch(self, stop: asyncio.Event, stages: list[asyncio.Task[None]], deadline: list[float]) -> None:
        """On ``stop``: end the sources, and cut the rest short at the drain deadline."""
        await stop.wait()
        loop = asyncio.get_running_loop()
        deadline.append(loop.time() + self.drain_timeout)
        self._drain_deadline = deadline[0]
        self._stopping = True
        log.info("stopping: sources closed, finishing what is in flight (at most %.1f s)", self.drain_timeout)
        self.supervisor.stop()
        _, late = await asyncio.wait(stages, timeout=self.drain_timeout)
        if late:
            self._cut_short = True
            log.error("drain deadline (%.1f s) passed; frames still in flight are dropped", self.drain_timeout)
            for task in late:
                task.cancel()

    def _account_cut_short(self) -> None:
        abandoned = sum(branch.abandon() for branch in self.branches.values())
        if abandoned:
            log.warning("%d frame(s) were still in flight and are counted as dropped (stopped)", abandoned)

    async def _abort(self) -> None:
        """Stopped at once (the run was cancelled): count what is abandoned, let the sinks go quickly."""
        self.abandon()
        for sink in self.sinks:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(sink.shutdown(), _SHUTDOWN_TIMEOUT)
        self.supervisor.sync()

    def abandon(self) -> None:
        """Stopped at once: what is in flight or waiting for a sink is counted as dropped (``stopped`` and
        ``sink_dropped``), and the counts are brought up to date, without waiting for anything."""
        self._stopping = self._cut_short = True
        self._account_cut_short()
        self.fanout.abandon()
        self.supervisor.sync()

    def _close_executors(self) -> None:
        for executor in (self._decode, self._prepare, *self._infer.values()):
            executor.shutdown(wait=False, cancel_futures=True)

    def apply(self, cfg: Config) -> tuple[list[str], list[str]]:
        """Reload: start the sources ``cfg`` adds or changes, stop those it removes or changes; the others run
        on untouched. Other changes need a restart (the sources of ``cfg`` are resolved against the settings
        the run started with)."""
        if cfg.model_dump(exclude={"sources"}) != self.cfg.model_dump(exclude={"sources"}):
            log.warning("reload: only [[sources]] changes apply while running; restart for the other changes")
        kept = self.cfg.model_copy(update={"sources": cfg.sources})
        started, stopped = self.supervisor.apply(resolve_sources(kept, self._live))
        self.cfg = kept
        return started, stopped

    def snapshot(self) -> Snapshot:
        """An immutable picture of the pipeline, for the dashboard, status socket, metrics and watchdog."""
        self.supervisor.sync()
        sinks = [replace(s.stats(), dropped=s.stats().dropped + self.fanout.dropped(s)) for s in self.sinks]
        left = 0.0
        if self._drain_deadline is not None and (loop := _running_loop()) is not None:
            left = max(0.0, self._drain_deadline - loop.time())  # none left once the run is over
        draining = self._stopping or self._delivering
        return self.metrics.snapshot(self.supervisor.queued(), sinks, draining=draining, drain_left_s=left)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def describe_sources(sources: Sequence[ResolvedSource]) -> list[str]:
    return [f"{s.id}={s.safe_url}" for s in sources]
