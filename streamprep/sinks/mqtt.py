"""Results over MQTT (aiomqtt), delivered in order, with nothing lost while the broker is away.

Topics: ``<prefix>/<device>/<source>/results`` (QoS 1 by default), ``<prefix>/<device>/<source>/status``
(retained), and ``<prefix>/<device>/status``: a retained ``online`` birth message and an ``offline`` last
will. With ``[events]``: ``.../<source>/events`` (QoS 1, through the outbox),
``.../events/<event_id>/snapshot`` (JPEG, just before the ``end`` event that names it), and retained
``.../zones/<zone>/<label>`` and ``.../lines/<line>/<label>/<direction>`` counts. Every result and event
passes through the :class:`~streamprep.sinks.outbox.Outbox` and leaves it only when the broker has
acknowledged it; :meth:`MqttSink.serve` publishes from it, reconnecting with capped,
jittered exponential backoff. Errors are converted to SinkError at this boundary, secrets masked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import unquote, urlsplit

import aiomqtt

from streamprep.flow.backoff import Backoff, BackoffPolicy
from streamprep.sinks.base import Sink
from streamprep.sinks.outbox import Message, Outbox
from streamprep.sinks.settings import MqttConfig
from streamprep.values.errors import ConfigError, SinkError
from streamprep.values.events import EventOutput, LineCount, ZoneCount, encode_event
from streamprep.values.frames import Result, SinkDrop, SourceStatus
from streamprep.values.metrics import SinkSnapshot
from streamprep.values.names import topic_level
from streamprep.values.published import encode
from streamprep.values.redact import redact_text, redact_url
from streamprep.values.secrets import read_secret

log = logging.getLogger(__name__)


class _QuietDisconnect(logging.Filter):
    """aiomqtt warns when it closes a client whose connection never came up; a failed connection is already
    reported (once, as one line), so that warning is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Could not gracefully disconnect")


_CLIENT_LOG = logging.getLogger("streamprep.mqtt.client")
_CLIENT_LOG.addFilter(_QuietDisconnect())

T = TypeVar("T")

CREDENTIAL_NAME = "mqtt-password"  # the name to give systemd's LoadCredential=
_DROP_LOG_INTERVAL = 10.0  # seconds between two warnings about dropped results
RECONNECT_FIRST_S = 0.2  # the first wait before connecting again; doubling (jittered) up to backoff_cap_s
_BACKSTOP_S = 1.0  # added to aiomqtt's own timeout of a connect; the most a failed one's goodbye may take


async def _honouring_cancel(step: Awaitable[T]) -> T:
    """Await ``step``, then raise CancelledError if this task was cancelled meanwhile.

    Python 3.11's ``asyncio.wait_for`` (which aiomqtt uses for every publish and connect, as does this module)
    returns the result instead of raising when the cancellation meets a future that has just completed: the
    cancellation is lost, the task lives on, and whatever waits for it (the run's TaskGroup after a second
    signal) waits forever. ``cancelling()`` still says the task was cancelled."""
    result = await step
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
    return result


def read_password(cfg: MqttConfig, url_password: str | None) -> str | None:
    """The broker password: URL, then ``password_env``, ``password_file``, ``$CREDENTIALS_DIRECTORY``."""
    if url_password:
        return url_password
    return read_secret("output.mqtt.password", cfg.password_env or None, cfg.password_file or None, CREDENTIAL_NAME)


def tls_context(cfg: MqttConfig) -> ssl.SSLContext:
    for key in ("ca_file", "cert_file", "key_file"):
        path: Path | None = getattr(cfg, key)
        if path is not None and not path.is_file():
            raise ConfigError(f"output.mqtt.{key}: {path}: {'not a file' if path.exists() else 'no such file'}")
    try:
        context = ssl.create_default_context(cafile=str(cfg.ca_file) if cfg.ca_file else None)
        if cfg.cert_file:
            context.load_cert_chain(str(cfg.cert_file), str(cfg.key_file) if cfg.key_file else None)
    except (OSError, ssl.SSLError) as exc:
        files = ", ".join(str(p) for p in (cfg.ca_file, cfg.cert_file, cfg.key_file) if p is not None)
        raise ConfigError(f"output.mqtt TLS files ({files}): {getattr(exc, 'strerror', None) or exc}") from None
    if cfg.tls_insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class MqttSink(Sink):
    def __init__(self, cfg: MqttConfig, device: str, state_dir: Path | None = None) -> None:
        parts = urlsplit(cfg.url)
        self.name = redact_url(cfg.url)
        if not parts.hostname:
            raise ConfigError(f"output.mqtt.url: {self.name} has no host")
        try:
            self._port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
        except ValueError:
            raise ConfigError(f"output.mqtt.url: {self.name} has an invalid port") from None
        self._host = parts.hostname
        self.cfg = cfg
        self._username = cfg.username or (unquote(parts.username) if parts.username else None)
        self._password = read_password(cfg, unquote(parts.password) if parts.password else None)
        uses_tls = parts.scheme == "mqtts" or cfg.ca_file is not None or cfg.cert_file is not None
        self._tls = tls_context(cfg) if uses_tls else None
        self._device = topic_level(device)
        self._prefix = cfg.topic_prefix
        self._client_id = cfg.client_id or f"streamprep-{self._device}"
        spool = state_dir / "mqtt-outbox.sqlite3" if state_dir is not None else None
        self.outbox = Outbox(cfg.outbox_max, cfg.outbox_policy, spool, on_drop=self._outbox_dropped)
        # told the source of every result the outbox drops, and why
        self.on_drop: Callable[[str, SinkDrop], None] | None = None
        self._client: aiomqtt.Client | None = None
        self._closing = asyncio.Event()
        self._retained: dict[str, bytes] = {}  # latest payload per retained topic, re-sent on each connect
        self.connected = False
        self.sent = 0
        self.reconnects = 0
        self._reported_drops = 0
        self._drops_logged_at = -_DROP_LOG_INTERVAL

    def _outbox_dropped(self, source: str) -> None:
        self._dropped(source, SinkDrop.OUTBOX_FULL)

    def _dropped(self, source: str, why: SinkDrop) -> None:
        if self.on_drop is not None:
            self.on_drop(source, why)

    # -- topics and payloads
    def topic(self, source: str, kind: str = "results") -> str:
        return f"{self._prefix}/{self._device}/{topic_level(source)}/{kind}"

    @property
    def device_topic(self) -> str:
        return f"{self._prefix}/{self._device}/status"

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, TimeoutError) or str(exc) == "Operation timed out":  # ours, or aiomqtt's
            return "timed out"
        text = str(exc) or type(exc).__name__
        if self._password:
            text = text.replace(self._password, "***")
        text = redact_text(text)
        if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
            return f"TLS certificate verification failed ({text})"
        if "Not authorized" in text or "Bad user name or password" in text:
            return f"{text}: check the user name and password"
        return text

    # -- connection
    def _new_client(self) -> aiomqtt.Client:
        will = aiomqtt.Will(self.device_topic, b"offline", qos=1, retain=True)
        return aiomqtt.Client(
            self._host,
            self._port,
            username=self._username,
            password=self._password,
            identifier=self._client_id,
            keepalive=self.cfg.keepalive_s,
            clean_session=not self.cfg.persistent_session,
            will=will,
            timeout=self.cfg.connect_timeout_s,
            tls_context=self._tls,
            logger=_CLIENT_LOG,
        )

    async def _connect(self) -> None:
        client = self._new_client()
        try:
            # aiomqtt times the CONNACK out itself (``timeout``) and then resets its state; cancelling it in the
            # middle instead leaves a cancelled future that its socket callbacks trip over later (an asyncio
            # traceback, "Exception in callback None()"), so this bound is only a backstop behind its own
            await _honouring_cancel(asyncio.wait_for(client.__aenter__(), self.cfg.connect_timeout_s + _BACKSTOP_S))
            await _honouring_cancel(client.publish(self.device_topic, b"online", qos=1, retain=True))
            # until none is left: a status that changes while these go out is not connected yet, so not
            # published by retain(); it must go out here, or the broker would keep the older one
            sent: dict[str, bytes] = {}
            while pending := [(t, p) for t, p in self._retained.items() if sent.get(t) is not p]:
                for topic, payload in pending:
                    await _honouring_cancel(client.publish(topic, payload, qos=self.cfg.qos_status, retain=True))
                    sent[topic] = payload
        except (aiomqtt.MqttError, OSError, TimeoutError, ssl.SSLError) as exc:
            with contextlib.suppress(Exception):  # the socket is closed at once; a broker that never answers
                await asyncio.wait_for(client.__aexit__(None, None, None), _BACKSTOP_S)  # does not ack that
            raise SinkError(f"MQTT broker {self.name} unreachable: {self._describe(exc)}") from None
        self._client = client
        self.connected = True
        await self.outbox.set_online(True)

    async def _disconnect(self, graceful: bool) -> None:
        client, self._client = self._client, None
        self.connected = False
        await self.outbox.set_online(False)
        if client is None:
            return
        with contextlib.suppress(Exception):
            if graceful:
                await asyncio.wait_for(client.publish(self.device_topic, b"offline", qos=1, retain=True), 2)
            await asyncio.wait_for(client.__aexit__(None, None, None), 2)

    # -- the Sink protocol
    async def open(self) -> None:
        await self.outbox.open()
        try:
            await self._connect()
            log.info("connected to MQTT broker %s as %s", self.name, self._client_id)
        except SinkError as exc:
            if not self.cfg.wait_for_broker:
                raise
            log.warning("%s; results wait in the outbox until it is reachable", exc)
        if len(self.outbox):
            log.info("MQTT outbox holds %d result(s) from before; delivering them first", len(self.outbox))

    def stats(self) -> SinkSnapshot:
        return SinkSnapshot(self.name, self.connected, self.sent, len(self.outbox), self.outbox.dropped)

    async def send(self, result: Result) -> None:
        topic = self.topic(result.source)
        await self.outbox.put(topic, encode(result, self._device), self.cfg.qos_results, result.source)
        self._report_drops()

    def _report_drops(self) -> None:
        if self.outbox.dropped > self._reported_drops:
            now = time.monotonic()
            if now - self._drops_logged_at >= _DROP_LOG_INTERVAL:
                log.warning(
                    "MQTT outbox full (%d) or its spool unwritable: %d result(s) dropped so far",
                    self.outbox.limit,
                    self.outbox.dropped,
                )
                self._drops_logged_at = now
            self._reported_drops = self.outbox.dropped

    async def send_status(self, status: SourceStatus) -> None:
        """Retained, so a subscriber arriving later sees each source's current state. Never waits for an
        absent broker: the latest status per source is re-published on every connect."""
        topic = self.topic(status.source, "status")
        body: dict[str, object] = {
            "source": status.source,
            "state": status.state.value,
            "reason": redact_text(status.reason),
            "at": round(time.time(), 3),
        }
        if status.counts is not None:
            body["counts"] = status.counts
        payload = json.dumps(body, separators=(",", ":")).encode()
        await self.retain(topic, payload)

    def keep_retained(self, topic: str, payload: bytes) -> None:
        """Retained state to publish on every connect (e.g. Home Assistant discovery configs)."""
        self._retained[topic] = payload

    async def retain(self, topic: str, payload: bytes) -> None:
        """Publish retained state: now if connected, and again on every connect (latest per topic)."""
        self._retained[topic] = payload
        if self._client is not None:
            with contextlib.suppress(aiomqtt.MqttError):
                await _honouring_cancel(self._client.publish(topic, payload, qos=self.cfg.qos_status, retain=True))

    async def send_event(self, item: EventOutput) -> None:
        """Events (and their snapshots) through the outbox, in order; counts as retained state."""
        if isinstance(item, ZoneCount):
            topic = self.topic(item.source, f"zones/{topic_level(item.zone)}/{topic_level(item.label)}")
            await self.retain(topic, str(item.count).encode())
            return
        if isinstance(item, LineCount):
            kind = f"lines/{topic_level(item.line)}/{topic_level(item.label)}/{item.direction}"
            await self.retain(self.topic(item.source, kind), str(item.count).encode())
            return
        events = self.topic(item.source, "events")
        if item.jpeg is not None:
            await self.outbox.put(f"{events}/{item.event_id}/snapshot", item.jpeg, 1, item.source)
        await self.outbox.put(events, encode_event(item, self._device), 1, item.source)
        self._report_drops()

    async def serve(self) -> None:
        """Publish from the outbox until :meth:`close` and the outbox is empty (or the drain time is up)."""
        backoff = Backoff(BackoffPolicy(first_s=RECONNECT_FIRST_S, cap_s=self.cfg.backoff_cap_s))
        while not (self._closing.is_set() and not len(self.outbox)):
            if self._client is None:
                try:
                    await self._connect()
                    self.reconnects += 1
                    backoff.succeeded()
                    log.info("reconnected to MQTT broker %s (%d waiting)", self.name, len(self.outbox))
                except SinkError as exc:
                    log.warning("%s; retrying", exc)
                    await self._pause(backoff.next_wait())
                    continue
            message = await self._next_or_closing()
            if message is None:
                continue
            try:
                await self._publish(message)
            except (aiomqtt.MqttError, TimeoutError) as exc:
                log.warning("MQTT publish to %s failed: %s; reconnecting", self.name, self._describe(exc))
                await self._disconnect(graceful=False)

    async def _publish(self, message: Message) -> None:
        assert self._client is not None
        try:
            await _honouring_cancel(
                self._client.publish(
                    message.topic, message.payload, qos=message.qos, timeout=self.cfg.publish_timeout_s
                )
            )
        except BaseException:
            self.outbox.release()
            raise
        await self.outbox.ack(message)
        self.sent += 1

    async def _next_or_closing(self) -> Message | None:
        """The next message to publish; None once closing with nothing left. While anything waits (in
        memory or in the spool, which may take a read), it is awaited, closing or not: that is the drain."""
        if len(self.outbox) or self.outbox.peek() is not None:
            return await self.outbox.next()
        getter = asyncio.ensure_future(self.outbox.next())
        closer = asyncio.ensure_future(self._closing.wait())
        try:
            await asyncio.wait({getter, closer}, return_when=asyncio.FIRST_COMPLETED)
        finally:  # cancelled too: neither may outlive this call
            closer.cancel()
            if not getter.done():
                getter.cancel()
        return getter.result() if getter.done() and not getter.cancelled() else None

    async def _pause(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def close(self) -> None:
        """Stop taking results; ``serve`` drains the outbox (memory and spool), then ends."""
        if len(self.outbox):
            log.info("MQTT: %d result(s) still to deliver to %s before stopping", len(self.outbox), self.name)
        self._closing.set()

    async def shutdown(self) -> None:
        """After ``serve`` ended (or was cancelled): say goodbye and keep the rest for the next run.

        Raises SinkError when results are lost: undelivered, and no spool could keep them."""
        if self.outbox.closed:
            return
        await self._disconnect(graceful=True)
        await self.outbox.close()
        if self.outbox.spooled:
            log.warning(
                "MQTT: %d result(s) not yet delivered to %s are kept in the spool for the next run",
                self.outbox.spooled,
                self.name,
            )
        if self.outbox.dropped:
            log.error("MQTT: %d result(s) dropped (outbox full or spool unwritable)", self.outbox.dropped)
        if lost := self.outbox.unsent():
            results = [m for m in lost if m.topic.endswith("/results")]
            for message in results:  # in its source's counts (sink_dropped), as the summary line shows them
                self._dropped(message.source, SinkDrop.LOST)
            why = "no state_dir to spool them to" if self.outbox.path is None else "the spool could not be written"
            more = f" and {len(lost) - len(results)} event message(s)" if len(lost) > len(results) else ""
            raise SinkError(
                f"MQTT broker {self.name}: {len(results)} result(s){more} could not be delivered and are lost ({why})"
            )
