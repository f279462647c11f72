"""Running as a daemon: systemd notifications and watchdog, the local status socket, reload.

All of it works from :class:`~streamprep.values.metrics.Snapshot` values; nothing here reaches into the pipeline.
The systemd protocol is one datagram per message on ``$NOTIFY_SOCKET`` (sd_notify(3)), simple enough that
a dependency would add nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from streamprep.values.metrics import Snapshot

log = logging.getLogger(__name__)

SnapshotSource = Callable[[], Snapshot]
_DRAIN_PERIOD = 1.0  # seconds between notifications while a stop drains
_DRAIN_MARGIN_S = 5.0


class Notifier:
    """sd_notify: sends ``KEY=VALUE`` lines to the socket systemd names in ``$NOTIFY_SOCKET``; a no-op without."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = dict(os.environ if environ is None else environ)
        address = env.get("NOTIFY_SOCKET", "")
        self._address = "\0" + address[1:] if address.startswith("@") else address
        self._socket: socket.socket | None = None
        if self._address:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.setblocking(False)  # never stall the event loop on a reader that is behind
        self.watchdog_s = watchdog_interval(env)

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def notify(self, **fields: str | int) -> None:
        if self._socket is None:
            return
        message = "\n".join(f"{key.upper()}={value}" for key, value in fields.items()).encode()
        try:
            self._socket.sendto(message, self._address)
        except OSError as exc:
            log.debug("sd_notify failed: %s", exc)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def watchdog_interval(env: dict[str, str]) -> float | None:
    """The watchdog period systemd asks for (``WatchdogSec=``), in seconds, if it is meant for this process."""
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 1_000_000
    except ValueError:
        return None


def summary(snap: Snapshot, previous: Snapshot | None) -> str:
    """One line for ``systemctl status``: sources online, results per second, outbox."""
    online = sum(s.state == "online" for s in snap.sources)
    rate = 0.0
    if previous is not None and snap.at > previous.at:
        rate = (snap.frames - previous.frames) / (snap.at - previous.at)
    outbox = sum(s.outbox for s in snap.sinks)
    return f"{online}/{len(snap.sources)} sources online, {rate:.1f} results/s, outbox {outbox}"


def progressing(snap: Snapshot, previous: Snapshot) -> bool:
    """Healthy: results came out since last time, or nothing is waiting to be processed."""
    return snap.frames > previous.frames or snap.queued == 0


def systemd_companion(notifier: Notifier, snapshot: SnapshotSource) -> Callable[[Any], Coroutine[Any, Any, None]]:
    """READY=1 once the pipeline runs; STATUS= every few seconds; WATCHDOG=1 only while it progresses.

    While a stop drains, every second: WATCHDOG=1 and, as long as results still flow out, EXTEND_TIMEOUT_USEC
    covering the rest of the drain deadline, so systemd does not kill a daemon that is still delivering.
    """

    async def run(_pipeline: Any) -> None:
        period = min(notifier.watchdog_s / 2, 5.0) if notifier.watchdog_s else 5.0
        previous = snapshot()
        notifier.notify(ready=1, status=summary(previous, None))
        log.info("ready%s", f" (watchdog every {notifier.watchdog_s:g} s)" if notifier.watchdog_s else "")
        try:
            while True:
                await asyncio.sleep(_DRAIN_PERIOD if previous.draining else period)
                current = snapshot()
                fields: dict[str, str | int] = {"status": summary(current, previous)}
                if current.draining:
                    fields["status"] = f"stopping: {current.queued} frame(s) queued, {current.drain_left_s:.0f} s left"
                    if current.delivered > previous.delivered:
                        fields["extend_timeout_usec"] = int((current.drain_left_s + _DRAIN_MARGIN_S) * 1_000_000)
                if notifier.watchdog_s:
                    if current.draining or progressing(current, previous):
                        fields["watchdog"] = 1
                    else:
                        log.warning("no progress: %d frame(s) waiting, no result for %.1f s", current.queued, period)
                notifier.notify(**fields)
                if current.draining or progressing(current, previous):
                    previous = current
        finally:
            notifier.notify(stopping=1)

    return run


def default_status_socket() -> Path | None:
    """``$RUNTIME_DIRECTORY/status.sock`` under systemd (RuntimeDirectory=), else none."""
    runtime = os.environ.get("RUNTIME_DIRECTORY")
    return Path(runtime.split(":")[0]) / "status.sock" if runtime else None


def status_companion(path: Path, snapshot: SnapshotSource) -> Callable[[Any], Coroutine[Any, Any, None]]:
    """Serve the latest snapshot as one JSON line to whoever connects to the unix socket ``path``."""

    async def answer(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(json.dumps(snapshot().to_json()).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def run(_pipeline: Any) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        server = await asyncio.start_unix_server(answer, path=str(path))
        path.chmod(0o660)
        log.info("status socket %s (streamprep top --socket %s)", path, path)
        try:
            async with server:
                await server.serve_forever()
        finally:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    return run


async def read_status(path: Path, timeout: float = 2.0) -> Snapshot:
    """One snapshot from a running daemon's status socket."""
    reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), timeout)
    try:
        line = await asyncio.wait_for(reader.readline(), timeout)
    finally:
        writer.close()
    return Snapshot.from_json(json.loads(line))
