"""benchmarks/shape_memory.py: each arm runs the row counts it names, in a process of its own."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "shape_memory.py"


def test_arms_run_exact_rounded_and_fixed_row_counts_and_print_their_ratios(tmp_path):
    out = tmp_path / "shape_memory.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--dtype", "float32", "--shapes", "20",
                           "--multiples", "1,1000", "--out", str(out)], check=True, capture_output=True, text=True)
    arms = json.loads(out.read_text())["arms"]
    assert {name: arm["distinct_shapes"] for name, arm in arms.items()} == {
        "exact counts": 20, "rounded to 1000": 3, "fixed count": 1}  # 1000..2900 rounded up: 1000, 2000, 3000
    assert all(arm["seconds"] > 0 for arm in arms.values())
    assert "rounded to 1000" in done.stdout and "vs exact" in done.stdout
