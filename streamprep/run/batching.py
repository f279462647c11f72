"""Gather frames from many sources into batches of at most ``max_size``, waiting at most ``max_wait``."""

from __future__ import annotations

import asyncio
import time
from typing import Generic, TypeVar

from streamprep.flow.queues import BoundedQueue, DropPolicy

T = TypeVar("T")


class Batcher(Generic[T]):
    """Takes items round-robin from per-source queues so that no source is starved.

    A batch is handed out as soon as it is full, or ``max_wait`` seconds after its first item was
    taken, whichever comes first. ``next_batch`` returns None once every queue is closed and drained.
    """

    def __init__(self, max_size: int, max_wait: float) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        if max_wait < 0:
            raise ValueError("max_wait must not be negative")
        self.max_size = max_size
        self.max_wait = max_wait
        self._queues: list[BoundedQueue[T]] = []
        self._next = 0
        self._wake = asyncio.Event()
        self._sealed = False
        self._gathering: list[T] = []

    def add_queue(self, maxsize: int, policy: DropPolicy) -> BoundedQueue[T]:
        """A new input queue feeding this batcher."""
        queue: BoundedQueue[T] = BoundedQueue(maxsize, policy, on_ready=self._wake.set)
        self._queues.append(queue)
        self._wake.set()
        return queue

    def seal(self) -> None:
        """No more queues will be added: once the existing ones are drained, batching ends."""
        self._sealed = True
        self._wake.set()

    @property
    def queues(self) -> tuple[BoundedQueue[T], ...]:
        return tuple(self._queues)

    def _take_round(self, batch: list[T], served: set[int]) -> None:
        """Take up to one item from each queue in turn, starting after the last one served."""
        n = len(self._queues)
        start = self._next
        for step in range(n):
            if len(batch) >= self.max_size:
                return
            i = (start + step) % n
            item = self._queues[i].get_nowait()
            if item is not None:
                batch.append(item)
                served.add(id(self._queues[i]))
                self._next = (i + 1) % n

    def _fill(self, batch: list[T], served: set[int]) -> None:
        before = -1
        while len(batch) < self.max_size and len(batch) != before:
            before = len(batch)
            self._take_round(batch, served)
        self._queues = [q for q in self._queues if not q.exhausted]
        if self._queues:
            self._next %= len(self._queues)

    def _finished(self) -> bool:
        return self._sealed and not self._queues

    def take_gathering(self) -> list[T]:
        """The items of a batch whose gathering was cancelled (they left their queues but were never
        handed out), so that a run cut short can count them; afterwards none."""
        items, self._gathering = self._gathering, []
        return items

    async def next_batch(self) -> list[T] | None:
        """The next batch. Waiting stops early once every input queue has given an item to this batch and
        none has more: with one frame per live camera, waiting longer would only age the frames."""
        self._gathering = []
        batch = await self._gather(self._gathering)
        self._gathering = []
        return batch

    async def _gather(self, batch: list[T]) -> list[T] | None:
        served: set[int] = set()
        deadline: float | None = None
        while True:
            self._wake.clear()
            self._fill(batch, served)
            if len(batch) >= self.max_size:
                return batch
            if batch and all(id(q) in served and not len(q) for q in self._queues):
                return batch
            if batch and deadline is None:
                deadline = time.monotonic() + self.max_wait
            if self._finished():
                return batch or None
            if deadline is None:
                await self._wake.wait()
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return batch
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except TimeoutError:
                self._fill(batch, served)
                return batch
