"""Dynamic batching: requests that arrive close together run as one batch on the model thread.

Each request becomes an item with ``rows`` (the sequences it adds to a batch) and a ``key``; only items
with equal keys share a batch (a generation batch has one temperature, for instance). Items wait in a
bounded queue: a full queue refuses new items (the server answers 503) instead of letting latency grow
without bound. One worker takes the oldest item, waits until ``window_s`` has passed since it arrived
or until ``max_rows`` compatible rows wait, then runs ``process`` on the model thread over the
compatible items in arrival order (at most ``max_rows`` rows; an item larger than that runs alone).
While a batch runs, new arrivals queue up, so under load the next batch starts full and at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Hashable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


class QueueFull(RuntimeError):
    """The batcher's queue holds ``max_waiting`` items already."""


@dataclass
class _Item:
    payload: Any
    rows: int
    key: Hashable
    arrived: float
    future: asyncio.Future = field(repr=False)


class Batcher:
    """``submit(payload)`` -> a future for ``process([payload, ...])[i]``, batched with its neighbours.

    ``process`` takes a list of payloads and returns one result per payload; it runs on ``executor``
    (one model thread: batches never overlap). An exception fails every request of its batch and the
    worker goes on with the next one.
    """

    def __init__(self, process: Callable[[list[Any]], list[Any]], executor: Executor, *, max_rows: int = 16,
                 window_s: float = 0.01, max_waiting: int = 64, name: str = "batch"):
        if max_rows < 1 or max_waiting < 1 or window_s < 0:
            raise ValueError(f"{name}: max_rows ({max_rows}) and max_waiting ({max_waiting}) must be >= 1 "
                             f"and window_s ({window_s}) >= 0")
        self.process, self.executor, self.name = process, executor, name
        self.max_rows, self.window_s, self.max_waiting = max_rows, window_s, max_waiting
        self._waiting: list[_Item] = []
        self._arrived = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.batches = 0  # batches run so far
        self.rows = 0  # rows run so far
        self.largest = 0  # rows in the largest batch

    # -- the event loop's side --------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"moslim-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for item in self._waiting:
            item.future.cancel()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def submit(self, payload: Any, rows: int = 1, key: Hashable = None) -> asyncio.Future:
        """Queue ``payload``; raise :class:`QueueFull` when ``max_waiting`` items wait already."""
        if len(self._waiting) >= self.max_waiting:
            raise QueueFull(f"the {self.name} queue is full ({self.max_waiting} requests waiting); retry shortly")
        loop = asyncio.get_running_loop()
        item = _Item(payload, rows, key, loop.time(), loop.create_future())
        self._waiting.append(item)
        self._arrived.set()
        return item.future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._drop_cancelled()
            if not self._waiting:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            first = self._waiting[0]
            while (left := first.arrived + self.window_s - loop.time()) > 0 and \
                    self._rows_like(first.key) < self.max_rows:
                self._arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), left)
            batch = self._take(first.key)
            if batch:
                await self._process(loop, batch)

    def _drop_cancelled(self) -> None:
        self._waiting = [item for item in self._waiting if not item.future.done()]

    def _rows_like(self, key: Hashable) -> int:
        return sum(item.rows for item in self._waiting if item.key == key and not item.future.done())

    def _take(self, key: Hashable) -> list[_Item]:
        batch, rows, rest = [], 0, []
        for item in self._waiting:
            if item.future.done():  # its client went away before the batch started
                continue
            if item.key == key and (not batch or rows + item.rows <= self.max_rows):
                batch.append(item)
                rows += item.rows
            else:
                rest.append(item)
        self._waiting = rest
        return batch

    async def _process(self, loop: asyncio.AbstractEventLoop, batch: list[_Item]) -> None:
        rows = sum(item.rows for item in batch)
        self.batches, self.rows, self.largest = self.batches + 1, self.rows + rows, max(self.largest, rows)
        log.debug("%s: %d requests, %d rows", self.name, len(batch), rows)
        try:
            results = await loop.run_in_executor(self.executor, self.process, [item.payload for item in batch])
        except Exception as err:  # noqa: BLE001 - one bad batch must not stop the server
            log.exception("%s failed for %d requests", self.name, len(batch))
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(err)
            return
        for item, result in zip(batch, results):
            if not item.future.done():
                item.future.set_result(result)
