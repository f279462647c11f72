"""Running the pipeline as a daemon: signals, reload, sd_notify, the companions, the end-of-run summary.

``streamprep run`` and the library's ``open()`` both come through here. Signals are handled from the first
moment (:class:`~streamprep.ops.signals.Signals`, installed by the entry points before any heavy import): a SIGTERM
while streamprep starts stops cleanly with exit 0, a SIGHUP then is applied once running. Inside the event
loop the first SIGINT/SIGTERM drains (one deadline), a second stops at once with exit 130 after counting what
it abandons (and should anything still hold the process up :data:`HARD_EXIT_S` later, it leaves then, counts
and summary first), and SIGHUP re-reads the config.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from streamprep.config.resolve import ResolvedSource, resolve_sources
from streamprep.config.schema import Config
from streamprep.config.validate import Preflight
from streamprep.flow.threads import leave_now
from streamprep.ops.logs import CallbackHandler
from streamprep.ops.service import Notifier, default_status_socket, status_companion, systemd_companion
from streamprep.ops.signals import Signals, StartupInterrupted, StopPolicy
from streamprep.run.fanout import RESULTS_QUEUE
from streamprep.run.lifetime import Run
from streamprep.run.pipeline import Companion, Pipeline, RunReport, describe_sources
from streamprep.sinks.base import Sink
from streamprep.values.errors import ExitStatus, StreamprepError, most_serious, print_error
from streamprep.values.metrics import SourceSnapshot
from streamprep.values.redact import redact_text

log = logging.getLogger("streamprep")

TRIM_EVERY_S = 60.0
ANNOTATE_QUEUE = 16  # results (with their frames) that may wait for each sink when frames are kept
HARD_EXIT_S = 5.0  # after a second stop signal, the process ends by then whatever a task or thread does
_HARD_EXIT_ENV = "STREAMPREP_HARD_EXIT_S"  # another value for it (the tests make it short to reach it)


@dataclass(frozen=True)
class Outcome:
    report: RunReport | None  # None when stopped before the pipeline ran
    aborted: bool  # a second signal stopped it at once

    @property
    def exit_code(self) -> int:
        """The most serious of its outcomes (:func:`~streamprep.values.errors.most_serious`, the same rule
        that combines the workers' statuses)."""
        outcomes: list[int] = [ExitStatus.ABORTED] if self.aborted else []
        if self.report is not None:
            outcomes += [failure.exit_code for failure in self.report.failures]
            outcomes += [ExitStatus.SINK] if self.report.sink_failures else []
        return most_serious(outcomes)


def build_sinks(cfg: Config, sources: Sequence[ResolvedSource]) -> list[Sink]:
    """The sinks the config asks for: JSON lines (``--out``, stdout by default) and/or MQTT."""
    from streamprep.sinks.jsonl import JsonLinesSink
    from streamprep.sinks.mqtt import MqttSink

    out = cfg.output
    sinks: list[Sink] = []
    if out.out is not None or out.mqtt is None:
        sinks.append(JsonLinesSink(out.out or "-", cfg.device))
    if out.annotate is not None:
        from streamprep.sinks.annotate import AnnotateSink

        sinks.append(AnnotateSink(out.annotate, [s.id for s in sources]))
    if out.mqtt is not None:
        from streamprep.ops.discovery import discovery_messages

        mqtt = MqttSink(out.mqtt, cfg.device, cfg.state_dir)
        for topic, payload in discovery_messages(cfg, sources):
            mqtt.keep_retained(topic, payload)
        sinks.append(mqtt)
    return sinks


async def _trim_memory(_pipeline: Pipeline) -> None:
    """Once a minute, glibc's free memory back to the system (off the loop): RSS shows what is in use."""
    from streamprep.flow.threads import trim_malloc

    while True:
        await asyncio.sleep(TRIM_EVERY_S)
        await asyncio.to_thread(trim_malloc)


def companions(cfg: Config, pipeline: Pipeline, notifier: Notifier, dashboard: bool) -> list[Companion]:
    """The daemon's helpers: systemd, status socket, metrics, dashboard or progress bars, memory trimming."""
    found: list[Companion] = [_trim_memory]
    if notifier.enabled:
        found.append(systemd_companion(notifier, pipeline.snapshot))
    status_path = cfg.status.socket or default_status_socket()
    if status_path is not None:
        found.append(status_companion(status_path, pipeline.snapshot))
    if cfg.metrics.listen:
        from streamprep.ops.exporter import metrics_companion

        found.append(metrics_companion(cfg.metrics.listen, pipeline.snapshot))
    if cfg.output.mqtt is not None and cfg.output.mqtt.status_interval_s > 0:
        from streamprep.ops.fleet import counts_companion  # retained statuses carry counts, for the fleet view

        found.append(counts_companion(cfg.output.mqtt.status_interval_s))
    if dashboard:
        from rich.console import Console

        from streamprep.ops.dashboard import dashboard_companion

        found.append(dashboard_companion(Console(stderr=True)))
    elif sys.stderr.isatty() and any(not s.live for s in pipeline.sources):
        from rich.console import Console

        from streamprep.ops.dashboard import progress_companion

        found.append(progress_companion(Console(stderr=True)))
    return found


class Daemon:
    """One run of the pipeline with everything around it. ``reload`` reads the config anew (SIGHUP)."""

    def __init__(
        self,
        cfg: Config,
        signals: Signals,
        reload: Callable[[], Config] | None = None,
        dashboard: bool = False,
        checked: Preflight | None = None,
    ) -> None:
        """``checked``: the preflight already run for ``cfg`` (its models loaded); else the run runs it."""
        self.cfg = cfg
        self.signals = signals
        self._reload = reload
        self._dashboard = dashboard
        self._checked = checked
        self.notifier = Notifier()
        self.pipeline: Pipeline | None = None
        self.sources: tuple[ResolvedSource, ...] = ()  # the config's sources, resolved once the run starts
        self._tasks: set[asyncio.Task[None]] = set()  # reloads in progress
        self._deadline: threading.Timer | None = None  # armed by a second stop signal
        self._leaving = threading.Lock()  # the deadline's summary is printed once

    def run(self) -> Outcome:
        """Load the models, open the sinks, run until done or stopped; signals are handled throughout
        (before the loop runs, a stop signal raises :class:`StartupInterrupted`). A second stop signal,
        whenever it comes before the outcome is decided, makes it exit 130."""
        try:
            self.sources = resolve_sources(self.cfg)
            log.info("sources: %s", ", ".join(describe_sources(self.sources)))
            self.signals.checkpoint()
            outcome = asyncio.run(self._serve())
        finally:
            self.signals.settle()
            self.notifier.close()
        if self.signals.stops >= 2 and not outcome.aborted:  # the second came as the loop was ending
            name = self.signals.last_stop.name if self.signals.last_stop else "signal"
            log.warning("second %s: stopping now", name)
            outcome = dataclasses.replace(outcome, aborted=True)
        self.signals.ignore()  # decided: a later signal changes nothing
        if self._deadline is not None:
            with self._leaving:  # not while the deadline is printing its summary (then it ends the process)
                self._deadline.cancel()
        return outcome

    def _arm_deadline(self, loop: asyncio.AbstractEventLoop) -> None:
        """The second stop signal: the process ends within :data:`HARD_EXIT_S` whatever a task or a thread
        does. Should the stop not have finished by then, the counts are brought up to date on the loop (or,
        if the loop does not answer within a second, taken as they are), summarized, and the process leaves
        with exit 130 (see :func:`streamprep.flow.threads.leave_now`)."""
        if self._deadline is not None:
            return
        try:
            seconds = float(os.environ.get(_HARD_EXIT_ENV, HARD_EXIT_S))
        except ValueError:
            seconds = HARD_EXIT_S

        def expire() -> None:
            if not self._leaving.acquire(blocking=False):
                return
            log.error("the stop did not finish %.1f s after the second signal: leaving now", seconds)
            pipeline = self.pipeline
            if pipeline is not None:
                counted = threading.Event()

                def on_loop() -> None:
                    with contextlib.suppress(Exception):
                        pipeline.abandon()
                    counted.set()

                with contextlib.suppress(RuntimeError):  # a closed loop
                    loop.call_soon_threadsafe(on_loop)
                counted.wait(1.0)
                with contextlib.suppress(Exception):
                    summarize(Outcome(pipeline.report(), aborted=True))
            leave_now(ExitStatus.ABORTED)

        self._deadline = threading.Timer(seconds, expire)
        self._deadline.name = "stop deadline"
        self._deadline.daemon = True
        self._deadline.start()

    async def _serve(self) -> Outcome:
        loop = asyncio.get_running_loop()
        main = asyncio.current_task()
        stop = asyncio.Event()
        aborted = False
        running = False  # pipeline.run is being awaited: a second signal cancels it

        def drain(_sig: signal.Signals) -> None:
            self.notifier.notify(stopping=1)
            stop.set()

        def abort(_sig: signal.Signals) -> None:
            nonlocal aborted
            aborted = True
            self._arm_deadline(loop)
            if main is not None and running:  # (else it has finished: cancelling would only lose it)
                main.cancel()

        def reload() -> None:
            if self.pipeline is None:
                self.signals.reload_pending = True
            else:
                self._tasks.add(loop.create_task(self._apply_reload()))

        policy = StopPolicy(log, drain, abort, reload)

        def on_stop(sig: signal.Signals) -> None:
            self.signals.stops += 1
            if self.pipeline is None:
                log.info("%s during start-up: stopping before processing anything", sig.name)
                stop.set()
                if main is not None:
                    main.cancel()
                return
            policy.on_stop(sig)

        self.signals.attach(loop, on_stop, policy.on_reload)
        if self.signals.stop_requested is not None:  # came just before the loop took over the signals
            raise StartupInterrupted(self.signals.stop_requested)
        annotate = self.cfg.output.annotate is not None  # that sink draws on the frames themselves
        owner = Run(
            self.cfg,
            build_sinks(self.cfg, self.sources),
            resolved=self.sources,
            checked=self._checked,
            keep_frames=annotate,
            sink_queue=ANNOTATE_QUEUE if annotate else RESULTS_QUEUE,
        )
        try:
            async with owner:
                pipeline = self.pipeline = owner.pipeline
                assert pipeline is not None
                # warnings and errors as the dashboard's and top's "recent errors"
                logging.getLogger().addHandler(CallbackHandler(pipeline.metrics.error))
                if self.signals.reload_pending:
                    self.signals.reload_pending = False
                    self._tasks.add(loop.create_task(self._apply_reload()))
                running = True
                try:
                    report = await owner.serve(stop, companions(self.cfg, pipeline, self.notifier, self._dashboard))
                    running = False
                except asyncio.CancelledError:
                    if not aborted:
                        raise
                    return Outcome(pipeline.report(), aborted=True)
                except BaseExceptionGroup as group:
                    raise first_error(group) from None
                return Outcome(report, aborted=aborted)
        except asyncio.CancelledError:
            if self.pipeline is None and stop.is_set():
                return Outcome(None, aborted=False)
            raise
        finally:
            self.signals.detach(loop)

    async def _apply_reload(self) -> None:
        task = asyncio.current_task()
        if task is not None:
            task.add_done_callback(self._tasks.discard)
        pipeline = self.pipeline
        if pipeline is None:
            return
        if self._reload is None:
            log.warning("SIGHUP: no --config to reload; ignored")
            return
        self.notifier.notify(reloading=1)
        try:
            cfg = await asyncio.to_thread(self._reload)
            started, stopped = pipeline.apply(cfg)
            log.info("reloaded: started %s; stopped %s", started or "none", stopped or "none")
        except StreamprepError as exc:
            log.error("reload refused, running on as before: %s", redact_text(str(exc)))
        finally:
            self.notifier.notify(ready=1)


def first_error(exc: BaseException) -> BaseException:
    """The first StreamprepError inside (nested) exception groups, else the first exception."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = first_error(inner)
            if isinstance(found, StreamprepError):
                return found
        return first_error(exc.exceptions[0])
    return exc


def summarize_sources(sources: Iterable[SourceSnapshot], quiet: bool = False, logger: logging.Logger = log) -> None:
    """One line per source with its counts (``run``'s summary, and ``run --workers``'s over all workers)."""
    for s in sources:
        if quiet:
            print(f"source {s.source}: {s.state}, {s.summary()}", file=sys.stderr)
        else:
            logger.info("source %s: %s, %s", s.source, s.state, s.summary())


def summarize(outcome: Outcome, errors: Sequence[str] = (), quiet: bool = False) -> None:
    """The end of a run: one line per source with its counts, then one error line per failure. ``quiet``
    (the dashboard kept the log to errors): the counts are printed to stderr all the same."""
    report = outcome.report
    if report is None:
        return
    summarize_sources(report.snapshot.sources, quiet)
    if report.cut_short:
        log.warning("the run was cut short: frames in flight were dropped (counted as stopped)")
    for failure in report.failures:
        print_error(str(failure))
    for line in report.sink_failures:
        print_error(line)
    for line in errors:
        print_error(line)
