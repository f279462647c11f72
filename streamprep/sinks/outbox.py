"""The MQTT outbox: every result waits here until the broker has acknowledged it.

Two tiers, one order. While the broker keeps up, messages wait in memory. When it is away (or the memory
tier fills), they go to a SQLite spool in the state directory, committed one by one, so a daemon killed
while the broker is down delivers them after a restart. Messages are always taken from the spool first, and
memory moves to the end of the spool before anything else is spooled, so delivery order is arrival order.

All SQLite work runs in one thread of the outbox's own: the event loop only awaits it. A spool that cannot
be written (a full disk, an I/O error) does not stop anything: messages wait in memory instead, up to the
memory limit, and beyond it are dropped, counted and logged once per episode.

The whole outbox is bounded: when full, ``drop_oldest`` evicts the oldest message not in flight (counted in
``dropped``, and per source through ``on_drop``) and ``block`` makes ``put`` wait (backpressure).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from streamprep.flow.threads import WriterThread
from streamprep.values.errors import SinkError

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    qos: int
    source: str = ""  # the source whose result this is (for counting drops)
    key: int = 0  # spool row id (0 in memory)


_MEMORY_LIMIT = 1000
_READ_AHEAD = 64
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT, payload BLOB, "
    "qos INTEGER, source TEXT NOT NULL DEFAULT '')"
)
_CLOSE_TIMEOUT = 5.0


class _Spool:
    """The SQLite file; used from the outbox's thread only."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(outbox)")}
        if "source" not in columns:  # a spool written by an older streamprep
            self._db.execute("ALTER TABLE outbox ADD COLUMN source TEXT NOT NULL DEFAULT ''")

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def insert(self, messages: list[Message]) -> list[int]:
        """Append ``messages``; their row ids."""
        keys = []
        with self._db:
            for m in messages:
                cursor = self._db.execute(
                    "INSERT INTO outbox (topic, payload, qos, source) VALUES (?, ?, ?, ?)",
                    (m.topic, m.payload, m.qos, m.source),
                )
                keys.append(int(cursor.lastrowid or 0))
        return keys

    def read(self, after: int, limit: int) -> list[Message]:
        rows = self._db.execute(
            "SELECT id, topic, payload, qos, source FROM outbox WHERE id > ? ORDER BY id LIMIT ?", (after, limit)
        ).fetchall()
        return [Message(r[1], bytes(r[2]), int(r[3]), str(r[4]), int(r[0])) for r in rows]

    def delete(self, key: int) -> None:
        self._db.execute("DELETE FROM outbox WHERE id = ?", (key,))

    def close(self) -> None:
        self._db.close()


class Outbox:
    def __init__(
        self,
        limit: int,
        policy: str = "drop_oldest",
        spool: Path | None = None,
        memory_limit: int = _MEMORY_LIMIT,
        on_drop: Callable[[str], None] | None = None,
    ) -> None:
        if policy not in ("drop_oldest", "block"):
            raise ValueError(f"unknown outbox policy {policy!r}")
        self.limit = limit
        self.policy = policy
        self.dropped = 0
        self.on_drop = on_drop
        self.path = spool
        self._memory: collections.deque[Message] = collections.deque()
        self._memory_limit = min(memory_limit, limit)
        self._spool: _Spool | None = None
        self._io: WriterThread | None = None
        self._cache: collections.deque[Message] = collections.deque()  # the oldest spooled rows, read ahead
        self._spooled = 0  # rows in the spool not yet acknowledged (the cached ones included)
        self._last_read = 0
        self._in_flight: Message | None = None
        self._moved: dict[int, Message] = {}  # a message spilled while in flight: its row, by the old's id
        self._spool_error: str | None = None
        self._online = False
        self._closed = False
        # every change of the tiers and their counts happens under this lock (the SQLite work is awaited
        # inside it), so a read of the spool never overtakes the write that it should see, and counts stay
        # exact; waiters (a publisher with nothing to send, a blocked put) wait on it
        self._changed = asyncio.Condition()

    async def open(self) -> None:
        """Open the spool (if any) and count what an earlier run left in it."""
        if self.path is None:
            return
        self._io = WriterThread("outbox spool")
        path = self.path

        def start() -> tuple[_Spool, int]:
            spool = _Spool(path)
            return spool, spool.count()

        try:
            self._spool, self._spooled = await self._run(start)
        except (sqlite3.Error, OSError) as exc:
            self._io.shutdown(wait=False)
            self._io = None
            raise SinkError(f"MQTT outbox spool {path}: {exc}") from None

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        assert self._io is not None
        return await asyncio.wrap_future(self._io.submit(fn, *args))

    def __len__(self) -> int:
        return len(self._memory) + self._spooled

    @property
    def spooled(self) -> int:
        return self._spooled

    @property
    def in_memory(self) -> int:
        return len(self._memory)

    @property
    def closed(self) -> bool:
        return self._closed

    async def set_online(self, online: bool) -> None:
        """While offline, new messages go straight to the spool (and what waits in memory moves there)."""
        async with self._changed:
            self._online = online
            if not online:
                await self._spill()

    async def _spill(self) -> bool:
        """Move the memory tier to the end of the spool; False when the spool cannot be written."""
        if self._spool is None or not self._memory:
            return self._spool is not None
        moving = list(self._memory)
        keys = await self._write(moving)
        if keys is None:
            return False
        for message, key in zip(moving, keys, strict=True):
            self._memory.popleft()
            if message is self._in_flight:  # being published: its ack must remove its row now
                self._in_flight = self._moved[id(message)] = dataclasses.replace(message, key=key)
        self._spooled += len(moving)
        return True

    async def _write(self, messages: list[Message]) -> list[int] | None:
        """Append to the spool: the rows' ids, or None (logged once per episode) when it cannot be written."""
        assert self._spool is not None
        try:
            keys = await self._run(self._spool.insert, messages)
        except (sqlite3.Error, OSError) as exc:
            if self._spool_error is None:
                log.error(
                    "MQTT outbox spool %s cannot be written (%s): results wait in memory (at most %d), then the "
                    "oldest are dropped",
                    self.path,
                    exc,
                    self._memory_limit,
                )
            self._spool_error = str(exc)
            return None
        if self._spool_error is not None:
            log.warning("MQTT outbox spool %s can be written again", self.path)
            self._spool_error = None
        return keys

    async def put(self, topic: str, payload: bytes, qos: int, source: str = "") -> None:
        async with self._changed:
            while len(self) >= self.limit:
                if self.policy == "drop_oldest":
                    if not await self._drop_oldest():
                        break
                else:
                    await self._changed.wait()
            await self._add(Message(topic, payload, qos, source))
            self._changed.notify_all()

    async def _add(self, message: Message) -> None:
        spooling = self._spool is not None and (
            not self._online or self._spooled > 0 or len(self._memory) >= self._memory_limit
        )
        if spooling and await self._spill() and await self._write([message]) is not None:
            self._spooled += 1
            return
        if spooling and len(self._memory) >= self._memory_limit:
            # the spool cannot be written and memory is full: the oldest in memory makes room
            oldest = next((i for i, m in enumerate(self._memory) if m is not self._in_flight), None)
            if oldest is None:
                self._count_drop(message)
                return
            self._count_drop(self._memory[oldest])
            del self._memory[oldest]
        self._memory.append(message)

    def _count_drop(self, message: Message) -> None:
        self.dropped += 1
        if self.on_drop is not None:
            self.on_drop(message.source)

    async def _fill_cache(self) -> None:
        if self._cache or self._spooled <= 0 or self._spool is None:
            return
        try:
            rows = await self._run(self._spool.read, self._last_read, _READ_AHEAD)
        except (sqlite3.Error, OSError) as exc:
            raise SinkError(f"MQTT outbox spool {self.path}: {exc}") from None
        if not rows:
            self._spooled = 0  # the count had drifted (the file changed underneath): trust the file
            return
        self._cache.extend(rows)
        self._last_read = rows[-1].key

    async def _drop_oldest(self) -> bool:
        """Evict the oldest message that is not being published; False if there is none."""
        await self._fill_cache()
        for tier in (self._cache, self._memory):
            for i, message in enumerate(tier):
                if message is self._in_flight:
                    continue
                del tier[i]
                if message.key:
                    self._spooled -= 1
                    await self._delete(message.key)
                self._count_drop(message)
                return True
        return False

    async def _delete(self, key: int) -> None:
        assert self._spool is not None
        try:
            await self._run(self._spool.delete, key)
        except (sqlite3.Error, OSError) as exc:
            # it stays in the file and will be sent again after a restart (consumers drop duplicates by id)
            log.warning("MQTT outbox spool %s: could not remove a delivered result: %s", self.path, exc)

    async def next(self) -> Message:
        """Wait for the oldest message; it stays in the outbox (and in flight) until :meth:`ack`."""
        async with self._changed:
            while True:
                await self._fill_cache()
                message = self._cache[0] if self._cache else (self._memory[0] if self._memory else None)
                if message is not None:
                    self._in_flight = message
                    return message
                await self._changed.wait()

    def peek(self) -> Message | None:
        """The oldest message already at hand (None if the spool would have to be read first)."""
        return self._cache[0] if self._cache else (self._memory[0] if self._memory and not self._spooled else None)

    async def ack(self, message: Message) -> None:
        """The broker has it: forget it."""
        async with self._changed:
            self._in_flight = None
            message = self._moved.pop(id(message), message)  # spilled to the spool while in flight
            if message.key:
                cached = next((m for m in self._cache if m.key == message.key), None)
                if cached is not None:
                    self._cache.remove(cached)
                if cached is not None or message.key > self._last_read:  # still in the spool: forget it
                    self._spooled -= 1
                    await self._delete(message.key)
            elif self._memory and self._memory[0] is message:
                self._memory.popleft()
            self._changed.notify_all()

    def release(self) -> None:
        """Publishing the message in flight failed: it stays first in line."""
        self._in_flight = None
        self._moved.clear()

    async def close(self) -> None:
        """Keep what is left for the next run (spool), and release the database."""
        if self._closed:
            return
        self._closed = True
        if self._spool is None or self._io is None:
            return
        try:
            async with asyncio.timeout(_CLOSE_TIMEOUT), self._changed:
                await self._spill()
            await asyncio.wait_for(self._run(self._spool.close), _CLOSE_TIMEOUT)
        except TimeoutError:
            log.error("MQTT outbox spool %s did not close in time", self.path)
        finally:
            self._io.shutdown(wait=False)
            self._io = None
