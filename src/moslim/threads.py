"""How PyTorch's OpenMP threads wait between parallel regions; set before torch is imported.

A decode step is ~600 small ops, each a parallel region. Threads that sleep between them (``OMP_WAIT_POLICY=
PASSIVE``) pay a wake-up on every op: on the idle 2-core machine a 16-row SmolLM2 decode step took 72-80 ms
passive against 40-60 ms with a short spin (three interleaved runs each). Threads that spin without bound
stall every region when other jobs share the cores (one 32-row step measured 3.4 s spinning vs 0.18 s
passive). The default here spins ``SPIN_COUNT`` iterations of libgomp's wait loop (well under a millisecond),
then sleeps: the idle machine's speed, and a bounded cost under contention (two processes on 2 cores:
a 24-row step took 250 ms vs 80 ms passive). On a machine shared with other heavy jobs, export
``OMP_WAIT_POLICY=PASSIVE``: a setting the user made is never changed.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

SPIN_COUNT = "10000"  # libgomp's default without a policy is 300,000: long enough to starve a neighbour
USER_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def configure_openmp(environ: MutableMapping[str, str] = os.environ) -> str:
    """Set a short spin-then-sleep wait unless the user chose a wait policy; return the setting in force.

    Only effective before torch (and its libgomp) is loaded in this process.
    """
    for name in USER_SETTINGS:
        if name in environ:
            return f"{name}={environ[name]} (set by the user)"
    environ["GOMP_SPINCOUNT"] = SPIN_COUNT
    return f"GOMP_SPINCOUNT={SPIN_COUNT}"
