"""Results over MQTT (aiomqtt): ``<prefix>/<device>/<source>/results``, QoS 1 by default.

The broker must be reachable at start (so a typo fails fast). If it goes away later, ``send`` keeps
the result and retries with capped exponential backoff: nothing is lost, and the pipeline slows to
the broker's pace (backpressure) instead of dropping. Errors are converted to SinkError at this
boundary, with any password masked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import ssl
import time
from urllib.parse import unquote, urlsplit

import aiomqtt

from streamprep.errors import ConfigError, SinkError
from streamprep.frames import Result
from streamprep.redact import redact_text, redact_url
from streamprep.schema import encode
from streamprep.sinks.base import topic_level
from streamprep.sources.base import SourceStatus

log = logging.getLogger(__name__)


class MqttSink:
    def __init__(
        self,
        url: str,
        device: str,
        prefix: str = "streamprep",
        qos: int = 1,
        connect_timeout: float = 5.0,
        backoff_cap: float = 10.0,
        close_timeout: float = 10.0,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ConfigError(f"output.mqtt: {redact_url(url)} must look like mqtt://HOST[:PORT]")
        self.name = redact_url(url)
        self._host = parts.hostname
        try:
            self._port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
        except ValueError:
            raise ConfigError(f"output.mqtt: {self.name} has an invalid port") from None
        self._username = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password) if parts.password else None
        self._tls = ssl.create_default_context() if parts.scheme == "mqtts" else None
        self._device = device
        self._prefix = prefix
        self._qos = qos
        self._connect_timeout = connect_timeout
        self._backoff_cap = backoff_cap
        self._close_timeout = close_timeout
        self._client: aiomqtt.Client | None = None
        self._closing = False
        self._statuses: dict[str, bytes] = {}  # latest status per source topic, re-sent on reconnect
        self.sent = 0
        self.reconnects = 0

    def topic(self, source: str, kind: str = "results") -> str:
        return f"{self._prefix}/{topic_level(self._device)}/{topic_level(source)}/{kind}"

    def _new_client(self) -> aiomqtt.Client:
        return aiomqtt.Client(
            self._host,
            self._port,
            username=self._username,
            password=self._password,
            timeout=self._connect_timeout,
            tls_context=self._tls,
        )

    def _describe(self, exc: BaseException) -> str:
        text = str(exc) or type(exc).__name__
        if self._password:
            text = text.replace(self._password, "***")
        return redact_text(text)

    async def _connect(self) -> None:
        client = self._new_client()
        try:
            await asyncio.wait_for(client.__aenter__(), self._connect_timeout)
        except (aiomqtt.MqttError, OSError, TimeoutError) as exc:
            reason = "timed out" if isinstance(exc, TimeoutError) else self._describe(exc)
            raise SinkError(f"MQTT broker {self.name} unreachable: {reason}") from None
        self._client = client
        for topic, payload in list(self._statuses.items()):
            with contextlib.suppress(aiomqtt.MqttError):
                await client.publish(topic, payload, qos=1, retain=True)

    async def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(aiomqtt.MqttError, OSError):
                await client.__aexit__(None, None, None)

    async def open(self) -> None:
        await self._connect()
        log.info("connected to MQTT broker %s", self.name)

    async def send(self, result: Result) -> None:
        payload = encode(result, self._device)
        topic = self.topic(result.source)
        delay = 0.2
        while True:
            if self._client is not None:
                try:
                    await self._client.publish(topic, payload, qos=self._qos)
                    self.sent += 1
                    return
                except aiomqtt.MqttError as exc:
                    log.warning("MQTT publish to %s failed: %s; reconnecting", self.name, self._describe(exc))
                    await self._drop_client()
            if self._closing:
                raise SinkError(f"MQTT broker {self.name} is unreachable; result not delivered")
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, self._backoff_cap)
            try:
                await self._connect()
                self.reconnects += 1
                log.info("reconnected to MQTT broker %s", self.name)
            except SinkError as exc:
                log.warning("%s", exc)

    async def send_status(self, status: SourceStatus) -> None:
        """Retained, so a subscriber arriving later sees each source's current state. Never blocks on an
        absent broker: the latest status per source is re-published on reconnect."""
        topic = self.topic(status.source, "status")
        payload = json.dumps(
            {
                "source": status.source,
                "state": status.state.value,
                "reason": redact_text(status.reason),
                "at": round(time.time(), 3),
            },
            separators=(",", ":"),
        ).encode()
        self._statuses[topic] = payload
        if self._client is not None:
            with contextlib.suppress(aiomqtt.MqttError):
                await self._client.publish(topic, payload, qos=1, retain=True)

    async def close(self) -> None:
        self._closing = True
        await self._drop_client()
