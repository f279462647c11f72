"""The MQTT outbox: every result waits here until the broker has acknowledged it.

Two tiers, one order. While the broker keeps up, messages wait in memory. When it is away (or the memory
tier fills), they go to a SQLite spool in the state directory, committed one by one, so a daemon killed
while the broker is down delivers them after a restart. At any moment at most one tier holds messages,
so delivery order is arrival order. The whole outbox is bounded: when full, ``drop_oldest`` evicts the
oldest message (counted in ``dropped``) and ``block`` makes ``put`` wait (backpressure).
"""

from __future__ import annotations

import asyncio
import collections
import sqlite3
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    qos: int
    key: int = 0  # spool row id (0 in memory)


_MEMORY_LIMIT = 1000
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT, payload BLOB, qos INTEGER)"
)


class Outbox:
    def __init__(
        self,
        limit: int,
        policy: str = "drop_oldest",
        spool: Path | None = None,
        memory_limit: int = _MEMORY_LIMIT,
    ) -> None:
        if policy not in ("drop_oldest", "block"):
            raise ValueError(f"unknown outbox policy {policy!r}")
        self.limit = limit
        self.policy = policy
        self.dropped = 0
        self._memory: collections.deque[Message] = collections.deque()
        self._memory_limit = min(memory_limit, limit)
        self._db: sqlite3.Connection | None = None
        self._spooled = 0
        self._online = False
        self._closed = False
        self._changed = asyncio.Event()
        if spool is not None:
            spool.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(spool, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
            self._spooled = int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def __len__(self) -> int:
        return len(self._memory) + self._spooled

    @property
    def spooled(self) -> int:
        return self._spooled

    def set_online(self, online: bool) -> None:
        """While offline, new messages go straight to the spool (and what waits in memory moves there)."""
        self._online = online
        if not online:
            self._spill()

    def _spill(self) -> None:
        if self._db is None or not self._memory:
            return
        with self._db:
            self._db.executemany(
                "INSERT INTO outbox (topic, payload, qos) VALUES (?, ?, ?)",
                [(m.topic, m.payload, m.qos) for m in self._memory],
            )
        self._spooled += len(self._memory)
        self._memory.clear()

    async def put(self, topic: str, payload: bytes, qos: int) -> None:
        while len(self) >= self.limit:
            if self.policy == "drop_oldest":
                self._drop_oldest()
            else:
                self._changed.clear()
                await self._changed.wait()
        message = Message(topic, payload, qos)
        use_spool = self._db is not None and (
            not self._online or self._spooled > 0 or len(self._memory) >= self._memory_limit
        )
        if use_spool:
            self._spill()
            assert self._db is not None
            self._db.execute("INSERT INTO outbox (topic, payload, qos) VALUES (?, ?, ?)", (topic, payload, qos))
            self._spooled += 1
        else:
            self._memory.append(message)
        self._changed.set()

    def _drop_oldest(self) -> None:
        if self._spooled:
            assert self._db is not None
            self._db.execute("DELETE FROM outbox WHERE id = (SELECT MIN(id) FROM outbox)")
            self._spooled -= 1
        elif self._memory:
            self._memory.popleft()
        self.dropped += 1

    def peek(self) -> Message | None:
        """The oldest message, left in place until :meth:`ack`."""
        if self._spooled:
            assert self._db is not None
            row = self._db.execute("SELECT id, topic, payload, qos FROM outbox ORDER BY id LIMIT 1").fetchone()
            if row is not None:
                return Message(row[1], bytes(row[2]), int(row[3]), int(row[0]))
            self._spooled = 0
        return self._memory[0] if self._memory else None

    async def next(self) -> Message:
        """Wait for the oldest message."""
        while (message := self.peek()) is None:
            self._changed.clear()
            await self._changed.wait()
        return message

    def ack(self, message: Message) -> None:
        """The broker has it: forget it."""
        if message.key:
            assert self._db is not None
            self._db.execute("DELETE FROM outbox WHERE id = ?", (message.key,))
            self._spooled -= 1
        elif self._memory and self._memory[0] is message:
            self._memory.popleft()
        self._changed.set()

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Keep what is left for the next run (spool), and release the database."""
        self._spill()
        self._closed = True
        if self._db is not None:
            self._db.close()
            self._db = None
