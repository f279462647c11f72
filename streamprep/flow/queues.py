"""A bounded queue with an explicit policy for when it is full; drops are counted here, where they happen."""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class DropPolicy(enum.StrEnum):
    """What ``put`` does when the queue is full."""

    BLOCK = "block"  # wait for room: nothing is lost (file replay)
    DROP_OLDEST = "drop_oldest"  # evict the oldest waiting item: the newest frame always gets in (live)
    DROP_NEWEST = "drop_newest"  # refuse the incoming item: what is queued keeps its place


class QueueClosed(Exception):
    """``put`` on a queue that was closed."""


class BoundedQueue(Generic[T]):
    """An asyncio queue of at most ``maxsize`` items with a :class:`DropPolicy`.

    ``close()`` says no more items will come; ``get()`` then drains what is left and returns ``None``.
    ``on_ready`` (optional) is called whenever an item arrives or the queue closes, so one consumer
    can wait on many queues.
    """

    def __init__(
        self, maxsize: int, policy: DropPolicy = DropPolicy.BLOCK, on_ready: Callable[[], None] | None = None
    ) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self.policy = policy
        self.dropped = 0
        self._items: deque[T] = deque()
        self._closed = False
        self._room = asyncio.Event()
        self._room.set()
        self._ready = asyncio.Event()
        self._on_ready = on_ready

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def exhausted(self) -> bool:
        """Closed and empty: nothing will ever come out again."""
        return self._closed and not self._items

    async def put(self, item: T) -> bool:
        """Add ``item``; returns False if the policy dropped it (DROP_NEWEST on a full queue)."""
        if self._closed:
            raise QueueClosed
        while len(self._items) >= self.maxsize:
            if self.policy is DropPolicy.DROP_OLDEST:
                self._items.popleft()
                self.dropped += 1
            elif self.policy is DropPolicy.DROP_NEWEST:
                self.dropped += 1
                return False
            else:
                self._room.clear()
                await self._room.wait()
                if self._closed:
                    raise QueueClosed
        self._items.append(item)
        self._signal()
        return True

    def offer(self, item: T) -> bool:
        """Add ``item`` without waiting: when full, DROP_OLDEST evicts, anything else drops ``item``."""
        if self._closed:
            return False
        if len(self._items) >= self.maxsize:
            self.dropped += 1
            if self.policy is not DropPolicy.DROP_OLDEST:
                return False
            self._items.popleft()
        self._items.append(item)
        self._signal()
        return True

    def get_nowait(self) -> T | None:
        """The oldest item, or None if the queue is empty."""
        if not self._items:
            return None
        item = self._items.popleft()
        self._room.set()
        return item

    async def get(self) -> T | None:
        """The oldest item, waiting for one; None once the queue is closed and drained."""
        while True:
            item = self.get_nowait()
            if item is not None or self._closed:
                return item
            self._ready.clear()
            await self._ready.wait()

    def clear(self) -> int:
        """Forget every waiting item; returns how many there were."""
        n = len(self._items)
        self._items.clear()
        self._room.set()
        return n

    def close(self) -> None:
        self._closed = True
        self._room.set()
        self._signal()

    def _signal(self) -> None:
        self._ready.set()
        if self._on_ready is not None:
            self._on_ready()
