"""A fleet behind one broker: every device's daemon publishes under ``<prefix>/<device>/...``, and anyone
subscribed to the broker (or to a central broker the edge brokers are bridged to) sees the whole fleet.

Two halves live here:

- :func:`counts_companion` (in every daemon with ``[output.mqtt]``): every ``status_interval_s`` seconds the
  retained ``<prefix>/<device>/<source>/status`` of each source is published again with its current counts,
  so the status topics always carry state *and* counts (not only after the run, as the final status does).
- ``streamprep fleet --mqtt URL`` (:func:`main`): reads the retained birth/will messages
  (``<prefix>/<device>/status``: ``online``/``offline``) and source statuses, and prints every device and
  source with its state, reason, counts and the age of its status; ``--watch`` keeps the table live,
  ``--json`` prints it for scripts. It connects with the same credentials and TLS settings as the daemon
  (``[output.mqtt]`` of ``--config``), under a client id of its own, without a persistent session.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import secrets
import ssl
import time
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from streamprep.sinks.settings import MqttConfig
from streamprep.values.errors import ConfigError, SinkError
from streamprep.values.frames import SourceStatus
from streamprep.values.redact import printable, redact_text, redact_url, safe_text

log = logging.getLogger(__name__)

QUIET_S = 0.5  # retained messages arrive at once after subscribing: this long without one, they are all in
_STATE_STYLE = {"online": "green", "connecting": "yellow", "stalled": "red", "offline": "red", "failed": "bold red"}


def counts_companion(interval: float) -> Callable[[Any], Coroutine[Any, Any, None]]:
    """Republish every source's status with its counts every ``interval`` seconds (a pipeline companion)."""

    async def run(pipeline: Any) -> None:
        while True:
            await asyncio.sleep(interval)
            for s in pipeline.snapshot().sources:
                status = SourceStatus(s.source, s.state, s.reason, s.decoded, s.sampled, s.corrupt, s.status_counts())
                pipeline.fanout.status(status)

    return run


# -- the fleet view


@dataclass
class SourceView:
    source: str
    state: str
    reason: str = ""
    at: float | None = None  # when the daemon published it (Unix seconds)
    counts: dict[str, int] = field(default_factory=dict)


@dataclass
class DeviceView:
    device: str
    state: str = "unknown"  # online / offline (the daemon's birth and last will), unknown when never said
    sources: dict[str, SourceView] = field(default_factory=dict)


@dataclass
class Fleet:
    prefix: str
    devices: dict[str, DeviceView] = field(default_factory=dict)
    messages: int = 0

    def take(self, topic: str, payload: bytes) -> None:
        """One retained message: a device's birth/will, or a source's status."""
        levels = topic.split("/")
        head = self.prefix.split("/")
        if levels[: len(head)] != head:
            return
        rest = levels[len(head) :]
        if len(rest) == 2 and rest[1] == "status":
            self._device(rest[0]).state = payload.decode("utf-8", "replace").strip() or "unknown"
        elif len(rest) == 3 and rest[2] == "status":
            try:
                body = json.loads(payload)
            except (json.JSONDecodeError, UnicodeDecodeError):
                return
            if not isinstance(body, dict):
                return
            counts = body.get("counts")
            self._device(rest[0]).sources[rest[1]] = SourceView(
                str(body.get("source", rest[1])),
                str(body.get("state", "unknown")),
                str(body.get("reason", "")),
                float(body["at"]) if isinstance(body.get("at"), (int, float)) else None,
                {str(k): int(v) for k, v in counts.items()} if isinstance(counts, dict) else {},
            )
        else:
            return
        self.messages += 1

    def _device(self, name: str) -> DeviceView:
        return self.devices.setdefault(name, DeviceView(name))

    def to_json(self) -> dict[str, Any]:
        return {"prefix": self.prefix, "devices": [asdict(d) for _, d in sorted(self.devices.items())]}


def render(fleet: Fleet, now: float | None = None) -> Any:
    """The fleet as one table: a row per source, its device's state beside it."""
    from rich.table import Table
    from rich.text import Text

    now = time.time() if now is None else now
    sources = sum(len(d.sources) for d in fleet.devices.values())
    table = Table(
        title=f"{len(fleet.devices)} device(s), {sources} source(s) under {fleet.prefix}/", title_justify="left"
    )
    for name, justify in (
        ("device", "left"),
        ("", "left"),
        ("source", "left"),
        ("state", "left"),
        ("sampled", "right"),
        ("processed", "right"),
        ("dropped", "right"),
        ("age", "right"),
        ("reason", "left"),
    ):
        table.add_column(name, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for _, device in sorted(fleet.devices.items()):
        device_state = Text(printable(device.state), style="green" if device.state == "online" else "red")
        if not device.sources:
            table.add_row(Text(printable(device.device)), device_state, "-", "", "", "", "", "", "")
        for _, s in sorted(device.sources.items()):
            age = f"{max(0.0, now - s.at):.0f} s" if s.at is not None else "-"
            table.add_row(
                Text(printable(device.device)),  # names and reasons come from the broker: shown, never obeyed
                device_state,
                Text(printable(s.source)),
                Text(printable(s.state), style=_STATE_STYLE.get(s.state, "")),
                str(s.counts.get("sampled", "-")),
                str(s.counts.get("processed", "-")),
                str(s.counts.get("dropped", "-")),
                age,
                Text(safe_text(s.reason)),
            )
    return table


def _client(cfg: MqttConfig) -> Any:
    import aiomqtt

    from streamprep.sinks.mqtt import read_password, tls_context

    parts = urlsplit(cfg.url)
    if not parts.hostname:
        raise ConfigError(f"fleet: {redact_url(cfg.url)} has no host")
    try:
        port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
    except ValueError:
        raise ConfigError(f"fleet: {redact_url(cfg.url)} has an invalid port") from None
    uses_tls = parts.scheme == "mqtts" or cfg.ca_file is not None or cfg.cert_file is not None
    return aiomqtt.Client(
        parts.hostname,
        port,
        username=cfg.username or (unquote(parts.username) if parts.username else None),
        password=read_password(cfg, unquote(parts.password) if parts.password else None),
        identifier=f"streamprep-fleet-{secrets.token_hex(4)}",
        clean_session=True,
        timeout=cfg.connect_timeout_s,
        tls_context=tls_context(cfg) if uses_tls else None,
    )


async def watch(cfg: MqttConfig, on_change: Callable[[Fleet], None], until_quiet: bool, timeout: float) -> Fleet:
    """Subscribe to the fleet's status topics; with ``until_quiet`` return once the retained messages are in
    (``QUIET_S`` without a new one, at most ``timeout``), else keep calling ``on_change`` until cancelled."""
    import aiomqtt

    fleet = Fleet(cfg.topic_prefix)
    client = _client(cfg)
    try:
        async with client:
            await client.subscribe([(f"{cfg.topic_prefix}/+/status", 1), (f"{cfg.topic_prefix}/+/+/status", 1)])
            deadline = time.monotonic() + timeout
            messages = aiter(client.messages)
            while True:
                wait = QUIET_S if until_quiet else 1.0
                if until_quiet:
                    wait = min(wait, deadline - time.monotonic())
                    if wait <= 0:
                        return fleet
                try:
                    message = await asyncio.wait_for(anext(messages), wait)
                except TimeoutError:
                    if until_quiet:
                        return fleet
                    on_change(fleet)
                    continue
                fleet.take(str(message.topic), bytes(message.payload))
                on_change(fleet)
    except aiomqtt.MqttError as exc:
        why = redact_text(str(exc) or type(exc).__name__)
        if "CERTIFICATE_VERIFY_FAILED" in why or "certificate verify failed" in why:
            why = f"TLS certificate verification failed ({why})"
        raise SinkError(f"fleet: MQTT broker {redact_url(cfg.url)} unreachable: {why}") from None
    except (OSError, ssl.SSLError) as exc:
        raise SinkError(f"fleet: MQTT broker {redact_url(cfg.url)} unreachable: {exc}") from None


def _mqtt_config(args: argparse.Namespace) -> MqttConfig:
    from streamprep.config import schema as config_mod

    data: dict[str, Any] = config_mod.load(args.config) if args.config else {}
    mqtt = (data.get("output") or {}).get("mqtt")
    mqtt = {"url": mqtt} if isinstance(mqtt, str) else dict(mqtt or {})
    if args.mqtt:
        mqtt["url"] = args.mqtt
    if args.prefix:
        mqtt["topic_prefix"] = args.prefix
    if "url" not in mqtt:
        raise ConfigError("fleet: give --mqtt URL, or a config with [output.mqtt]")
    where = f"{args.config}: " if args.config else ""
    cfg = config_mod.parse({"output": {"mqtt": mqtt}}, where).output.mqtt
    assert cfg is not None
    return cfg


def main(args: argparse.Namespace) -> int:
    """``streamprep fleet``: the table once (or ``--json``), or live with ``--watch``."""
    cfg = _mqtt_config(args)
    if args.watch:
        from rich.console import Console
        from rich.live import Live

        console = Console()
        with (
            Live(render(Fleet(cfg.topic_prefix)), console=console, refresh_per_second=2) as live,
            contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError),
        ):
            asyncio.run(watch(cfg, lambda fleet: live.update(render(fleet)), until_quiet=False, timeout=0))
        return 0
    fleet = asyncio.run(watch(cfg, lambda _fleet: None, until_quiet=True, timeout=args.timeout))
    if args.json:
        print(json.dumps(fleet.to_json(), indent=2))
        return 0
    import sys

    from rich.console import Console

    Console(width=None if sys.stdout.isatty() else 200).print(render(fleet))  # a pipe: no folded names
    return 0
