"""Resident memory that matmuls of many shapes leave behind, exact row counts vs counts rounded up.

Under bf16 autocast on a CPU, PyTorch runs linear layers through oneDNN, which builds a kernel for each
matmul shape and keeps up to 1,024 of them (``ONEDNN_PRIMITIVE_CACHE_CAPACITY``). The reward model's packed
layers (``moslim.reward.pooled_top``) multiply a batch's real tokens, so with exact counts almost every batch
is a new shape. Each arm runs in a process of its own (what a process keeps is the point): forward and
backward of a SmolLM2-sized MLP block (576 -> 1536 -> 576, and 576 -> 576) over ``--shapes`` row counts
between 1,000 and 3,000, the counts exact or rounded up to a multiple, and a fixed count as the floor.
It prints each arm's resident-memory growth and time, and the ratios to the exact arm.

    .venv/bin/python benchmarks/shape_memory.py            # bf16 autocast (the CPU should have AVX512-BF16)
    .venv/bin/python benchmarks/shape_memory.py --dtype float32
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from moslim.usage import resident_mib


def _arm(dtype: str, multiple: int, shapes: int) -> dict:
    """One arm, in this process: resident growth (MiB) and seconds."""
    import torch

    torch.manual_seed(0)
    layers = [torch.nn.Linear(576, 1536), torch.nn.Linear(1536, 576), torch.nn.Linear(576, 576)]
    counts = [1000 + round(2000 * i / shapes) for i in range(shapes)] if multiple else [2000] * shapes
    start, began = resident_mib(), time.perf_counter()
    for n in counts:
        rows = -(-n // multiple) * multiple if multiple else n
        x = torch.randn(rows, 576, requires_grad=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bfloat16"):
            out = layers[2](layers[1](torch.relu(layers[0](x))))
        out.float().sum().backward()
    return {"growth_mib": resident_mib() - start, "seconds": time.perf_counter() - began,
            "distinct_shapes": len({-(-n // multiple) * multiple if multiple else n for n in counts})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16")
    parser.add_argument("--shapes", type=int, default=300, help="row counts per arm (one forward + backward each)")
    parser.add_argument("--multiples", default="1,64,128,256", help="the arms: row counts rounded up to these")
    parser.add_argument("--arm", type=int, default=None, help=argparse.SUPPRESS)  # run one arm, print JSON
    parser.add_argument("--out", default="runs/bench/shape_memory.json")
    args = parser.parse_args()
    if args.arm is not None:
        print(json.dumps(_arm(args.dtype, args.arm, args.shapes)))
        return
    arms = {}
    for multiple in [int(m) for m in args.multiples.split(",")] + [0]:
        name = "fixed count" if multiple == 0 else ("exact counts" if multiple == 1 else f"rounded to {multiple}")
        done = subprocess.run([sys.executable, __file__, "--dtype", args.dtype, "--shapes", str(args.shapes),
                               "--arm", str(multiple)], check=True, capture_output=True, text=True)
        arms[name] = json.loads(done.stdout.strip().splitlines()[-1])
    exact = arms["exact counts"]
    print(f"{args.shapes} forward + backward passes of a 576 -> 1536 -> 576 block, {args.dtype}, one process each")
    print(f"{'arm':<16} {'shapes':>7} {'growth MiB':>11} {'vs exact':>9} {'seconds':>8} {'vs exact':>9}")
    for name, arm in arms.items():
        print(f"{name:<16} {arm['distinct_shapes']:>7} {arm['growth_mib']:>11.0f} "
              f"{arm['growth_mib'] / exact['growth_mib']:>8.2f}x {arm['seconds']:>8.1f} "
              f"{arm['seconds'] / exact['seconds']:>8.2f}x")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"dtype": args.dtype, "shapes": args.shapes, "arms": arms}, indent=1))


if __name__ == "__main__":
    main()
