"""Prometheus metrics, from snapshots (off by default; loopback by default when on)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

from prometheus_client import start_http_server
from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from streamprep.config.schema import parse_listen
from streamprep.values.errors import ConfigError
from streamprep.values.metrics import Snapshot

log = logging.getLogger(__name__)


class SnapshotCollector:
    """Turns the latest snapshot into Prometheus metrics at scrape time (in the HTTP server's thread)."""

    def __init__(self) -> None:
        self.snapshot: Snapshot | None = None  # replaced whole by the event loop: reading it is safe

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot
        if snap is None:
            return
        per_source = {
            "frames_decoded": ("Frames decoded per source", "decoded"),
            "frames_sampled": ("Frames kept by the sampler per source", "sampled"),
            "frames_processed": ("Frames that became results per source", "processed"),
            "frames_dropped": ("Sampled frames that became no result, per source (all reasons)", "dropped"),
            "results_sink_dropped": (
                "Results of the source that a sink dropped (outbox full, output behind)",
                "sink_dropped",
            ),
            "model_runs": ("Regions the model ran on per source (one per frame with regions = full)", "model_runs"),
            "packets_corrupt": ("Packets that could not be decoded per source", "corrupt"),
            "source_reconnects": ("Reconnections per source", "reconnects"),
        }
        for name, (doc, attr) in per_source.items():
            family = CounterMetricFamily(f"streamprep_{name}", doc, labels=["source"])
            for s in snap.sources:
                family.add_metric([s.source], float(getattr(s, attr)))
            yield family
        by_reason = {
            "frames_dropped_by_reason": ("Sampled frames dropped per source and reason", "drops"),
            "results_sink_dropped_by_reason": (
                "Results of the source that a sink dropped, per source and reason",
                "sink_drops",
            ),
        }
        for name, (doc, attr) in by_reason.items():
            family = CounterMetricFamily(f"streamprep_{name}", doc, labels=["source", "reason"])
            for s in snap.sources:
                for reason, count in getattr(s, attr).items():
                    family.add_metric([s.source, reason], float(count))
            yield family
        up = GaugeMetricFamily("streamprep_source_online", "1 while the source delivers frames", labels=["source"])
        queued = GaugeMetricFamily("streamprep_queue_depth", "Frames waiting per source", labels=["source"])
        age = GaugeMetricFamily(
            "streamprep_frame_age_p50_ms", "Median frame age at inference, from capture", labels=["source"]
        )
        clock = GaugeMetricFamily(
            "streamprep_capture_clock",
            "1 for the clock frame ages count from: camera, arrival or decode",
            labels=["source", "clock"],
        )
        for s in snap.sources:
            up.add_metric([s.source], 1.0 if s.state == "online" else 0.0)
            queued.add_metric([s.source], s.queued)
            age.add_metric([s.source], s.age_p50_ms)
            if s.capture_clock:
                clock.add_metric([s.source, s.capture_clock], 1.0)
        yield from (up, queued, age, clock)
        yield GaugeMetricFamily("streamprep_batch_fill", "Mean frames per batch, recent", value=snap.batch_fill)
        yield CounterMetricFamily("streamprep_batches", "Inference batches run", value=snap.batches)
        yield CounterMetricFamily("streamprep_results", "Results made", value=snap.frames)
        connected = GaugeMetricFamily("streamprep_sink_connected", "1 while the sink is connected", labels=["sink"])
        outbox = GaugeMetricFamily("streamprep_outbox_depth", "Results waiting for delivery", labels=["sink"])
        sent = CounterMetricFamily("streamprep_sink_sent", "Results delivered", labels=["sink"])
        lost = CounterMetricFamily(
            "streamprep_sink_dropped",
            "Results the sink dropped (outbox full, output behind or failed)",
            labels=["sink"],
        )
        for k in snap.sinks:
            connected.add_metric([k.name], 1.0 if k.connected else 0.0)
            outbox.add_metric([k.name], k.outbox)
            sent.add_metric([k.name], k.sent)
            lost.add_metric([k.name], k.dropped)
        yield from (connected, outbox, sent, lost)
        docs = {
            "preprocess_ms": "Preprocessing time per frame (ms)",
            "inference_ms": "Inference time per batch (ms)",
            "age_ms": "Frame age when inference started, from capture (ms)",
        }
        for name, h in snap.histograms.items():
            buckets = [(str(float(b)), c) for b, c in zip(h.bounds, h.counts, strict=True)] + [("+Inf", h.count)]
            yield HistogramMetricFamily(f"streamprep_{name}", docs.get(name, name), buckets=buckets, sum_value=h.total)


def metrics_companion(listen: str, snapshot: Callable[[], Snapshot]) -> Callable[[Any], Coroutine[Any, Any, None]]:
    host, port = parse_listen(listen)
    collector = SnapshotCollector()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)

    async def run(_pipeline: Any) -> None:
        collector.snapshot = snapshot()
        try:
            server, thread = start_http_server(port, addr=host, registry=registry)
        except OSError as exc:
            raise ConfigError(f"metrics.listen: cannot listen on {listen}: {exc.strerror or exc}") from None
        log.info("Prometheus metrics on http://%s/metrics", listen)
        try:
            while True:
                await asyncio.sleep(1.0)
                collector.snapshot = snapshot()
        finally:
            server.shutdown()
            thread.join(timeout=2)

    return run
