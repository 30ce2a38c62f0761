"""Rerun the bad-input cases of the reliability review against the CLI, as a new user meets them.

    nice .venv/bin/python scripts/bad_input_cases.py [--rm runs/demo/rm]

Each case runs ``moslim ...`` in a fresh temporary folder and passes when the command exits with code 2, its
message contains the expected text (the place and what was expected), it took less than the case's time limit
(nothing heavy loaded), and it left no run marker or output behind. Cases that need a trained reward model use
``--rm`` and are reported as not run when it is absent. Prints one line per case and exits 1 if any failed.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MOSLIM = [sys.executable, "-m", "moslim"]


@dataclass
class Case:
    name: str
    argv: list[str]
    expect: str  # a substring of stderr
    setup: Callable[[Path], None] = lambda folder: None
    absent: list[str] = field(default_factory=list)  # paths (relative to the folder) that must not exist
    max_seconds: float = 30.0
    needs_rm: bool = False
    env: dict[str, str] = field(default_factory=dict)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def truncated_gz(folder: Path) -> None:
    data = gzip.compress(b"".join(json.dumps({"prompt": f"q{i}", "response": "a" * 200}).encode() + b"\n"
                                  for i in range(200)))
    (folder / "data.jsonl.gz").write_bytes(data[: len(data) // 2])


def failed_save(folder: Path) -> None:
    write(folder / "half_rm" / "config.json", "{}")


def cases(rm: str) -> list[Case]:
    rm_yaml, rl_yaml = str(REPO / "configs/demo/rm.yaml"), str(REPO / "configs/demo/rl.yaml")
    eval_yaml = str(REPO / "configs/demo/eval.yaml")
    return [
        Case("rm train: negative max_steps", ["rm", "train", "--config", rm_yaml, "train.max_steps=-5",
                                              "output_dir=out"],
             "override 'train.max_steps=-5': -5 is out of range", absent=["out"]),
        Case("data validate: first row lacks response",
             ["data", "validate", "rows.jsonl"], "rows.jsonl:1: missing field 'response'",
             setup=lambda f: write(f / "rows.jsonl", '{"prompt": "q"}\n{"prompt": "q", "response": "a"}\n')),
        Case("data validate: CSV without a response column", ["data", "validate", "rows.csv"],
             "--column response=answer",
             setup=lambda f: write(f / "rows.csv", "prompt,answer\nq,a\n")),
        Case("data validate: empty file", ["data", "validate", "empty.jsonl"], "empty",
             setup=lambda f: write(f / "empty.jsonl", "")),
        Case("data validate: truncated .gz", ["data", "validate", "data.jsonl.gz"], "data.jsonl.gz",
             setup=truncated_gz),
        Case("rl train: misspelt mapping method", ["rl", "train", "--config", rl_yaml, "reward.method=zscor",
                                                   "train.output_dir=out"], "did you mean 'zscore'",
             absent=["out"], max_seconds=15),
        Case("rl train: unknown mapping option", ["rl", "train", "--config", rl_yaml, "reward.method=zscore",
                                                  "reward.options={foo: 1}", "train.output_dir=out"],
             "reward.options", absent=["out"], max_seconds=15),
        Case("rl train: unknown objective in objective_weights",
             ["rl", "train", "--config", rl_yaml, f"reward.model={rm}", "data.objective_weights={humour: 1}",
              "train.output_dir=out"], "unknown objective 'humour'", absent=["out"], max_seconds=15,
             needs_rm=True),
        Case("rl train: reward model folder missing", ["rl", "train", "--config", rl_yaml,
                                                       "reward.model=runs/demo/nope", "train.output_dir=out"],
             "reward.model folder runs/demo/nope does not exist", absent=["out"], max_seconds=15),
        Case("rm score: reward model folder missing", ["rm", "score", "--model", "runs/demo/nope", "--input",
                                                       "in.jsonl", "--out", "out.jsonl"],
             "--model folder runs/demo/nope does not exist",
             setup=lambda f: write(f / "in.jsonl", '{"prompt": "q", "response": "a"}\n'), absent=["out.jsonl"]),
        Case("rm score: folder left by a failed save", ["rm", "score", "--model", "half_rm", "--input", "in.jsonl",
                                                        "--out", "out.jsonl"], "half_rm",
             setup=lambda f: (failed_save(f), write(f / "in.jsonl", '{"prompt": "q", "response": "a"}\n')),
             absent=["out.jsonl"]),
        Case("rm score: non-string response", ["rm", "score", "--model", rm, "--input", "in.jsonl",
                                               "--out", "out.jsonl"], "in.jsonl:2",
             setup=lambda f: write(f / "in.jsonl",
                                   '{"prompt": "q", "response": "a"}\n{"prompt": "q", "response": 7}\n'),
             absent=["out.jsonl"], needs_rm=True),
        Case("rm score: empty response", ["rm", "score", "--model", rm, "--input", "in.jsonl",
                                          "--out", "out.jsonl"], "in.jsonl:1",
             setup=lambda f: write(f / "in.jsonl", '{"prompt": "q", "response": "  "}\n'),
             absent=["out.jsonl"], needs_rm=True),
        Case("eval: policy folder missing", ["eval", "--config", eval_yaml, "--policy", "./nope", "--reward-model",
                                             rm, "--out", "ev"], "policy folder ./nope does not exist",
             absent=["ev/generations-base.jsonl"], needs_rm=True, max_seconds=15),
        Case("eval: unknown model name, offline", ["eval", "--config", eval_yaml, "--policy", "nope",
                                                   "--reward-model", rm, "--out", "ev"],
             "'nope' is neither a built-in nor a local folder", absent=["ev/generations-base.jsonl"], needs_rm=True,
             max_seconds=15, env={"HF_HUB_OFFLINE": "1"}),
        Case("generate: objective named twice", ["generate", "--policy", "smollm2-135m-instruct", "--prefer",
                                                 "verbosity=1,verbosity=2", "hi"],
             "verbosity", max_seconds=15),
    ]


def run(case: Case, rm_present: bool) -> tuple[str, str]:
    if case.needs_rm and not rm_present:
        return "not run", "no reward model (--rm)"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        case.setup(folder)
        start = time.perf_counter()
        try:
            done = subprocess.run([*MOSLIM, *case.argv], cwd=folder, capture_output=True, text=True,
                                  timeout=max(60.0, 4 * case.max_seconds), env={**os.environ, **case.env})
        except subprocess.TimeoutExpired:
            return "FAIL: still running (killed)", f"> {max(60.0, 4 * case.max_seconds):.0f} s"
        seconds = time.perf_counter() - start
        problems = []
        if done.returncode != 2:
            problems.append(f"exit code {done.returncode}, expected 2")
        if case.expect not in done.stderr:
            problems.append(f"message lacks {case.expect!r}")
        if "Traceback" in done.stderr:
            problems.append("a traceback")
        if seconds > case.max_seconds:
            problems.append(f"took {seconds:.0f} s > {case.max_seconds:.0f} s")
        problems += [f"left {p} behind" for p in case.absent if (folder / p).exists()]
        message = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
        return ("FAIL: " + "; ".join(problems)) if problems else "ok", f"{seconds:.1f} s: {message[:150]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rm", default="runs/demo/rm", help="a trained reward model folder (some cases need one)")
    args = parser.parse_args()
    rm = str(Path(args.rm).resolve())
    rm_present = (Path(rm) / "moslim_run.json").is_file()
    failed = 0
    for case in cases(rm):
        status, detail = run(case, rm_present)
        failed += status.startswith("FAIL")
        print(f"{status:<8} {case.name}  ({detail})", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
