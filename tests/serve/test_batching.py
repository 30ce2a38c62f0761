"""The batcher: a window gathers neighbours, keys keep batches uniform, max_rows caps them, the queue is bounded."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from moslim.serve.batching import Batcher, QueueFull


def run(coroutine):
    return asyncio.run(coroutine)


@pytest.fixture
def executor():
    with ThreadPoolExecutor(1) as pool:
        yield pool


def recorder():
    batches = []

    def process(payloads):
        batches.append(list(payloads))
        return [p * 10 for p in payloads]

    return batches, process


def test_requests_within_the_window_share_a_batch_and_get_their_own_results(executor):
    batches, process = recorder()

    async def main():
        batcher = Batcher(process, executor, max_rows=8, window_s=0.2)
        batcher.start()
        futures = [batcher.submit(i) for i in range(5)]
        results = await asyncio.gather(*futures)
        await batcher.stop()
        return results, batcher

    results, batcher = run(main())
    assert results == [0, 10, 20, 30, 40] and batches == [[0, 1, 2, 3, 4]]
    assert (batcher.batches, batcher.rows, batcher.largest) == (1, 5, 5)


def test_max_rows_splits_and_keys_separate_batches_in_arrival_order(executor):
    batches, process = recorder()

    async def main():
        batcher = Batcher(process, executor, max_rows=3, window_s=0.2)
        batcher.start()
        futures = [batcher.submit(i, rows=1, key=i % 2) for i in range(6)] + [batcher.submit(6, rows=5, key=0)]
        await asyncio.gather(*futures)
        await batcher.stop()

    run(main())
    assert batches == [[0, 2, 4], [1, 3, 5], [6]]  # a request larger than max_rows runs alone


def test_a_full_batch_does_not_wait_for_the_window(executor):
    batches, process = recorder()

    async def main():
        batcher = Batcher(process, executor, max_rows=2, window_s=30)
        batcher.start()
        results = await asyncio.wait_for(asyncio.gather(batcher.submit(1), batcher.submit(2)), 5)
        await batcher.stop()
        return results

    assert run(main()) == [10, 20]


def test_the_queue_is_bounded_and_a_failed_batch_fails_only_its_requests(executor):
    release = threading.Event()
    calls = []

    def process(payloads):
        calls.append(payloads)
        if payloads == ["slow"]:
            release.wait(5)
        if "bad" in payloads:
            raise RuntimeError("boom")
        return payloads

    async def main():
        batcher = Batcher(process, executor, max_rows=1, window_s=0, max_waiting=1)
        batcher.start()
        slow = batcher.submit("slow")
        while not calls:  # the first request is running in the model thread
            await asyncio.sleep(0.01)
        bad = batcher.submit("bad")
        with pytest.raises(QueueFull, match="1 requests waiting"):
            batcher.submit("refused")
        release.set()
        assert await slow == "slow"
        with pytest.raises(RuntimeError, match="boom"):
            await bad
        assert await batcher.submit("after") == "after"
        await batcher.stop()

    run(main())


def test_settings_are_checked():
    with pytest.raises(ValueError, match="max_rows"):
        Batcher(lambda x: x, None, max_rows=0)
