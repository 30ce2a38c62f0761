"""Per-stage peak resident memory: what a reset starts, and what the process peak keeps."""

import gc
import mmap

import numpy as np

from moslim import usage


def _touched(mib: int) -> mmap.mmap:
    """``mib`` MiB of new pages, written: a fresh mapping, never a freed heap chunk that is resident already.

    A plain ``np.ones`` of that size may be carved from a free chunk of the heap that earlier tests left
    resident, so resident memory does not move (seen on CI: the mark stayed at the byte).
    """
    pages = mmap.mmap(-1, mib * 2**20)
    np.frombuffer(pages, dtype=np.uint8).fill(1)
    return pages


def test_a_reset_gives_the_next_stage_its_own_peak_and_the_process_keeps_the_highest():
    gc.collect()  # earlier tests' garbage freed now, not in the middle (the marks are read against what is resident)
    usage.reset_peak_rss()
    start = usage.resident_mib()
    big = _touched(300)
    stage_one = usage.peak_rss_mib()
    big.close()
    assert usage.reset_peak_rss(), "this kernel offers /proc/self/clear_refs"
    start_two = usage.resident_mib()
    small = _touched(10)
    stage_two = usage.peak_rss_mib()
    small.close()
    assert stage_one - start > 250
    assert stage_two - start_two < 100  # the second stage's peak no longer holds the first one's array
    # The kernel folds the last pages into its mark lazily: freed memory may leave it a few pages lower.
    assert usage.process_peak_rss_mib() > stage_one - 4


def test_where_the_kernel_refuses_a_reset_the_peak_is_the_process_one(tmp_path, monkeypatch):
    monkeypatch.setattr(usage, "_CLEAR_REFS", tmp_path / "missing" / "clear_refs")
    before = usage.peak_rss_mib()
    assert usage.reset_peak_rss() is False
    assert usage.peak_rss_mib() >= before


def test_without_proc_the_peak_comes_from_getrusage(tmp_path, monkeypatch):
    monkeypatch.setattr(usage, "_STATUS", tmp_path / "no-status")
    assert usage.peak_rss_mib() > 10  # a Python process with numpy holds more than 10 MiB


def test_cpu_seconds_grow_with_work():
    start = usage.cpu_seconds()
    sum(i * i for i in range(2_000_000))
    assert usage.cpu_seconds() > start


def test_released_heap_pages_leave_the_resident_set():
    usage.release_free_memory()  # earlier tests' freed blocks no longer resident: the new ones fault in fresh pages
    start = usage.resident_mib()
    blocks = [b"\x01" * 100_000 for _ in range(3000)]  # ~290 MiB in blocks on the C heap, written
    pinned = b"\x02" * 100_000  # allocated above them: the heap's top cannot shrink past it by itself
    held = usage.resident_mib()
    del blocks
    freed = usage.resident_mib()
    assert usage.release_free_memory(), "glibc offers malloc_trim"
    released = usage.resident_mib()
    assert held - start > 250
    assert freed - released > 200 or freed - start < 50  # what the heap kept after the free goes back
    assert released - start < 50 and len(pinned) == 100_000
