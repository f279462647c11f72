"""Running the pipeline as a daemon: signals, reload, sd_notify, the companions, the end-of-run summary.

``streamprep run`` and the library's ``open()`` both come through here. Signals are handled from the first
moment (:class:`Signals`): a SIGTERM while models are still loading stops cleanly with exit 0, a SIGHUP then
is applied once running. Inside the event loop the first SIGINT/SIGTERM drains (one deadline), a second
stops at once with exit 130 after counting what it abandons, and SIGHUP re-reads the config.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from streamprep.config.schema import Config
from streamprep.inference.model import LoadedModel, load_model
from streamprep.ops.logs import CallbackHandler
from streamprep.ops.service import Notifier, default_status_socket, status_companion, systemd_companion
from streamprep.run.fanout import RESULTS_QUEUE
from streamprep.run.pipeline import Companion, Pipeline, RunReport, describe_sources
from streamprep.sinks.base import Sink
from streamprep.sources import is_live
from streamprep.values.errors import StreamprepError
from streamprep.values.redact import redact_text

log = logging.getLogger("streamprep")

EXIT_ABORTED = 130
TRIM_EVERY_S = 60.0
ANNOTATE_QUEUE = 16  # results (with their frames) that may wait for each sink when frames are kept
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_ALL = (*_STOP_SIGNALS, signal.SIGHUP)


class StartupInterrupted(BaseException):
    """A stop signal arrived before the pipeline was running."""

    def __init__(self, sig: signal.Signals) -> None:
        super().__init__(sig.name)
        self.signal = sig


class Signals:
    """SIGINT, SIGTERM and SIGHUP for the whole life of ``run``.

    Before the event loop runs, signals are remembered: start-up looks at them between its steps
    (:meth:`checkpoint` raises :class:`StartupInterrupted` after a stop signal; raising from the handler
    itself could land inside a library's import or initialisation and be turned into another error). A
    SIGHUP is applied once running. Inside the loop they become calls of ``on_stop``/``on_reload``.
    """

    def __init__(self) -> None:
        self.reload_pending = False
        self.stop_requested: signal.Signals | None = None
        self.stops = 0

    def install(self) -> None:
        """Handle signals now, before anything slow starts."""
        for sig in _STOP_SIGNALS:
            signal.signal(sig, self._early_stop)
        signal.signal(signal.SIGHUP, self._early_reload)

    def _early_stop(self, signum: int, _frame: types.FrameType | None) -> None:
        self.stops += 1
        if self.stop_requested is None:
            self.stop_requested = signal.Signals(signum)

    def checkpoint(self) -> None:
        """Between two steps of start-up: stop here if a stop signal came."""
        if self.stop_requested is not None:
            raise StartupInterrupted(self.stop_requested)

    def _early_reload(self, _signum: int, _frame: types.FrameType | None) -> None:
        self.reload_pending = True

    def _late(self, signum: int, _frame: types.FrameType | None) -> None:
        if signum in _STOP_SIGNALS:
            self.stops += 1

    def attach(
        self, loop: asyncio.AbstractEventLoop, on_stop: Callable[[signal.Signals], None], on_reload: Callable[[], None]
    ) -> None:
        for sig in _STOP_SIGNALS:
            loop.add_signal_handler(sig, on_stop, sig)
        loop.add_signal_handler(signal.SIGHUP, on_reload)

    def detach(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop is about to end: signals are only counted from now on. (Left to the loop, its handlers
        would be removed as it closes, leaving the default action, death, in place.)"""
        for sig in _ALL:
            with contextlib.suppress(ValueError, RuntimeError):
                loop.remove_signal_handler(sig)
        self.settle()

    def settle(self) -> None:
        for sig in _ALL:
            signal.signal(sig, self._late)

    def ignore(self) -> None:
        """The run is over and its outcome decided: a late signal must not change the exit status (an
        ignored signal also stays ignored while the interpreter exits)."""
        for sig in _ALL:
            signal.signal(sig, signal.SIG_IGN)


@dataclass(frozen=True)
class Outcome:
    report: RunReport | None  # None when stopped before the pipeline ran
    aborted: bool  # a second signal stopped it at once

    @property
    def exit_code(self) -> int:
        if self.aborted:
            return EXIT_ABORTED
        if self.report is None:
            return 0
        if self.report.failures:
            return self.report.failures[0].exit_code
        if self.report.sink_failures:
            return 5
        return 0


def build_sinks(cfg: Config) -> list[Sink]:
    """The sinks the config asks for: JSON lines (``--out``, stdout by default) and/or MQTT."""
    from streamprep.sinks.jsonl import JsonLinesSink
    from streamprep.sinks.mqtt import MqttSink

    out = cfg.output
    sinks: list[Sink] = []
    if out.out is not None or out.mqtt is None:
        sinks.append(JsonLinesSink(out.out or "-", cfg.device))
    if out.annotate is not None:
        from streamprep.sinks.annotate import AnnotateSink

        sinks.append(AnnotateSink(out.annotate, cfg.source_ids()))
    if out.mqtt is not None:
        from streamprep.ops.discovery import discovery_messages

        mqtt = MqttSink(out.mqtt, cfg.device, cfg.state_dir)
        for topic, payload in discovery_messages(cfg):
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
    elif sys.stderr.isatty() and any(not is_live(s, cfg.realtime) for s in cfg.sources):
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
        models: dict[str, LoadedModel] | None = None,
    ) -> None:
        self.cfg = cfg
        self.signals = signals
        self._reload = reload
        self._dashboard = dashboard
        self._models = models
        self.notifier = Notifier()
        self.pipeline: Pipeline | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # reloads in progress

    def run(self) -> Outcome:
        """Load the models, open the sinks, run until done or stopped; signals are handled throughout
        (before the loop runs, a stop signal raises :class:`StartupInterrupted`)."""
        try:
            models = self._models
            if models is None:
                models = {}
                for key in self.cfg.used_models():
                    models[key] = load_model(self.cfg.model_for(key))
                    self.signals.checkpoint()
            log.info("sources: %s", ", ".join(describe_sources(self.cfg)))
            self.signals.checkpoint()
            return asyncio.run(self._serve(models))
        finally:
            self.signals.settle()
            self.notifier.close()

    async def _serve(self, models: dict[str, LoadedModel]) -> Outcome:
        loop = asyncio.get_running_loop()
        main = asyncio.current_task()
        sinks = build_sinks(self.cfg)
        opened: list[Sink] = []
        stop = asyncio.Event()
        aborted = False

        def on_stop(sig: signal.Signals) -> None:
            nonlocal aborted
            self.signals.stops += 1
            if self.pipeline is None:
                log.info("%s during start-up: stopping before processing anything", sig.name)
                stop.set()
                if main is not None:
                    main.cancel()
                return
            if stop.is_set():
                log.warning("second %s: stopping now", sig.name)
                aborted = True
                if main is not None:
                    main.cancel()
                return
            log.info("%s received: stopping", sig.name)
            self.notifier.notify(stopping=1)
            stop.set()

        def on_reload() -> None:
            if self.pipeline is None:
                self.signals.reload_pending = True
            else:
                self._tasks.add(loop.create_task(self._apply_reload()))

        self.signals.attach(loop, on_stop, on_reload)
        if self.signals.stop_requested is not None:  # came just before the loop took over the signals
            raise StartupInterrupted(self.signals.stop_requested)
        try:
            for sink in sinks:
                await sink.open()
                opened.append(sink)
            annotate = self.cfg.output.annotate is not None  # that sink draws on the frames themselves
            pipeline = self.pipeline = Pipeline(
                self.cfg, models, sinks, keep_frames=annotate, sink_queue=ANNOTATE_QUEUE if annotate else RESULTS_QUEUE
            )
            # warnings and errors as the dashboard's and top's "recent errors"
            logging.getLogger().addHandler(CallbackHandler(pipeline.metrics.error))
            if self.signals.reload_pending:
                self.signals.reload_pending = False
                self._tasks.add(loop.create_task(self._apply_reload()))
            try:
                report = await pipeline.run(stop, companions(self.cfg, pipeline, self.notifier, self._dashboard))
            except asyncio.CancelledError:
                if not aborted:
                    raise
                return Outcome(pipeline.report(), aborted=True)
            except BaseExceptionGroup as group:
                raise first_error(group) from None
            return Outcome(report, aborted=False)
        except asyncio.CancelledError:
            if self.pipeline is None and stop.is_set():
                return Outcome(None, aborted=False)
            raise
        finally:
            self.signals.detach(loop)
            if self.pipeline is None:
                for sink in opened:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(sink.shutdown(), 3.0)

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


def summarize(outcome: Outcome, errors: Sequence[str] = (), quiet: bool = False) -> None:
    """The end of a run: one line per source with its counts, then one error line per failure. ``quiet``
    (the dashboard kept the log to errors): the counts are printed to stderr all the same."""
    report = outcome.report
    if report is None:
        return
    for s in report.snapshot.sources:
        if quiet:
            print(f"source {s.source}: {s.state}, {s.summary()}", file=sys.stderr)
        else:
            log.info("source %s: %s, %s", s.source, s.state, s.summary())
    if report.cut_short:
        log.warning("the run was cut short: frames in flight were dropped (counted as stopped)")
    for failure in report.failures:
        print(f"streamprep: error: {redact_text(str(failure))}", file=sys.stderr)
    for line in report.sink_failures:
        print(f"streamprep: error: {redact_text(line)}", file=sys.stderr)
    for line in errors:
        print(f"streamprep: error: {redact_text(line)}", file=sys.stderr)
