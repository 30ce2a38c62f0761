"""What this process has used: CPU seconds, and its peak resident memory per stage.

The kernel keeps one high-water mark of resident memory per process (``VmHWM``). On Linux it can be
reset (``/proc/self/clear_refs``), so a process that runs stages one after another (``moslim demo``)
can give each stage its own peak: :func:`reset_peak_rss` at the stage's start, :func:`peak_rss_mib`
at its end. A reset also lowers what ``getrusage`` and ``/usr/bin/time`` report for the process, so
:func:`process_peak_rss_mib` keeps the highest mark seen before any reset.

What a stage frees stays resident: the C heap keeps freed blocks below its top for reuse. In the demo on a bf16
CPU the report stage, which loads nothing, peaked at 8.0 GiB, what the evaluation had left; with
:func:`release_free_memory` between stages, at 1.5 GiB, and the evaluation at 6.8 GiB instead of 9.6.
"""

from __future__ import annotations

import ctypes
import gc
import os
import re
import resource
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_before_reset_mib = 0.0  # the highest mark a reset has cleared


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def resident_mib() -> float:
    """Resident memory of this process now, in MiB (``/proc/self/statm``; Linux)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    """Peak resident memory in MiB since the process started or since the last :func:`reset_peak_rss`."""
    try:
        found = re.search(r"^VmHWM:\s+(\d+) kB", _STATUS.read_text(), re.MULTILINE)
    except OSError:
        found = None
    if found:
        return int(found.group(1)) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def reset_peak_rss() -> bool:
    """Start a new peak from the memory resident now; False where the kernel offers no reset."""
    global _before_reset_mib
    before = peak_rss_mib()
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    _before_reset_mib = max(_before_reset_mib, before)
    return True


def process_peak_rss_mib() -> float:
    """Peak resident memory in MiB since the process started, across resets."""
    return max(_before_reset_mib, peak_rss_mib())


def release_free_memory() -> bool:
    """Collect garbage, then return the C heap's free pages to the kernel (glibc's ``malloc_trim``); False where
    the C library has no such call (macOS, musl)."""
    gc.collect()
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return bool(trim(0))
