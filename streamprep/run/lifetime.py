"""One run's lifetime, owned in one place: check → load the models → open the sinks → run → drain → report.

    async with Run(cfg, sinks) as run:       # checks (the same preflight as ``streamprep check``), loads
        report = await run.serve(stop)        # the models, opens the sinks; then runs until the sources end
                                              # or ``stop`` is set, and drains once
    # leaving: every sink is shut down (an AsyncExitStack), whatever happened

``streamprep run`` (the daemon adds signals, reload and its companions), every ``--workers`` process (each
is a ``streamprep run``) and the library's ``streamprep.open()``/``stream()``/``tensors()`` all run through
this class, so they refuse the same configs and give the same results.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Self

from streamprep.config.resolve import ResolvedSource
from streamprep.config.schema import Config
from streamprep.config.validate import Preflight, preflight
from streamprep.inference.model import LoadedModel
from streamprep.run.fanout import RESULTS_QUEUE
from streamprep.run.pipeline import Companion, Pipeline, RunReport
from streamprep.sinks.base import Sink
from streamprep.sources.base import Source
from streamprep.values.metrics import Snapshot

log = logging.getLogger(__name__)


class Run:
    """The one owner of a run (see the module docstring).

    ``sinks``: where results go (opened on entry, shut down on exit). ``sources``: ready-made sources by the
    id a ``[[sources]]`` entry gives them (the library's own ``Source`` objects). ``models``: models already
    loaded, by model key (the rest are loaded). ``resolved``: the sources of ``cfg`` already resolved (else the
    pipeline resolves them). ``checked``: the preflight the caller already ran for this
    config (the command line runs it before deciding on ``--workers``); otherwise entering runs it, off the
    event loop, and raises its first fatal problem. ``keep_frames``: results carry their decoded frames.
    """

    def __init__(
        self,
        cfg: Config,
        sinks: Sequence[Sink] = (),
        *,
        sources: Mapping[str, Source] | None = None,
        models: Mapping[str, LoadedModel] | None = None,
        checked: Preflight | None = None,
        resolved: Sequence[ResolvedSource] | None = None,
        keep_frames: bool = False,
        sink_queue: int = RESULTS_QUEUE,
        checkpoint: Callable[[], None] = lambda: None,
    ) -> None:
        self.cfg = cfg
        self.sinks = list(sinks)
        self._sources = dict(sources or {})
        self._models = dict(models or {})
        self._checked = checked
        self._resolved = resolved
        self._keep_frames = keep_frames
        self._sink_queue = sink_queue
        self._checkpoint = checkpoint
        self._stack = contextlib.AsyncExitStack()
        self.pipeline: Pipeline | None = None
        self.report: RunReport | None = None

    async def __aenter__(self) -> Self:
        found = self._checked
        if found is None:
            found = await asyncio.to_thread(
                preflight, self.cfg, given=self._models, custom=frozenset(self._sources), checkpoint=self._checkpoint
            )
            found.enforce(log)
        models = {**found.models, **self._models}
        async with contextlib.AsyncExitStack() as stack:
            for sink in self.sinks:
                await stack.enter_async_context(sink)
            self.pipeline = Pipeline(
                self.cfg,
                models,
                self.sinks,
                sources=self._sources,
                keep_frames=self._keep_frames,
                sink_queue=self._sink_queue,
                resolved=self._resolved,
            )
            self._stack = stack.pop_all()
        return self

    async def serve(self, stop: asyncio.Event | None = None, companions: Sequence[Companion] = ()) -> RunReport:
        """Run until every source has ended (or ``stop`` is set) and every result is delivered, within the one
        drain deadline; the report's counts add up for every source. Cancelling it stops at once (counted)."""
        if self.pipeline is None:
            raise RuntimeError("the run has not started: use it in `async with`")
        self.report = await self.pipeline.run(stop, companions)
        return self.report

    def snapshot(self) -> Snapshot:
        """The run's counters now: per source state, decoded, sampled, processed, dropped; sinks; timings."""
        if self.pipeline is None:
            raise RuntimeError("the run has not started: use it in `async with`")
        return self.pipeline.snapshot()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stack.aclose()
