"""The demo evaluation's generation throughput, before and after the OpenMP wait change and continuous batching, in
one run.

    nice -n 5 .venv/bin/python benchmarks/eval_throughput.py               # 32 prompts x 6 preferences
    nice -n 5 .venv/bin/python benchmarks/eval_throughput.py --batch-sizes 24 48 96
    nice -n 5 .venv/bin/python benchmarks/eval_throughput.py --prompts 96 --arms before,after  # the whole grid

Generates what ``moslim eval --config configs/demo/eval.yaml`` generates (its held-out prompts, preference grid,
sampling and 128-token cap) for the base SmolLM2 on the first ``--prompts`` prompts' cells, with the fast
decoder RL uses. Each arm runs in a fresh process, since OpenMP fixes its wait policy when torch loads:
- before: ``OMP_WAIT_POLICY=PASSIVE`` (what ``moslim`` set until 2026-12-04), batches of 24 (the config's then) in
  the cells' order, each run until its longest completion ends (``fast.generate_batch`` per batch, as until
  2026-12-05);
- batches: the ``moslim`` command's OpenMP setting (``moslim.threads``), the same batches of 48 (the config's until
  2026-12-05);
- sorted: that setting, the prompts shortest first (``fast.generate_stream(continuous=False)``), batches of 48;
- continuous: that setting, shortest first and continuous batching (prompts join as rows end), width 48, each
  prompt prefilled whole;
- after: ``fast.generate_stream`` as the evaluation runs it: continuous batching as above with the config's batch
  size as its width, and the start that prompts share (their system message) prefilled once;
- with ``--batch-sizes``, one more "after" arm per width.
Arms alternate over ``--rounds``. Prints completions/s per arm (median over rounds) and each arm's ratio to
"before"; writes ``runs/bench/eval_throughput.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

CONFIG = "configs/demo/eval.yaml"
BEFORE = {"name": "before", "env": {"OMP_WAIT_POLICY": "PASSIVE"}, "batch": 24, "mode": "batches"}
BATCHES = {"name": "batches", "env": {}, "batch": 48, "mode": "batches"}
SORTED = {"name": "sorted", "env": {}, "batch": 48, "mode": "sorted"}
CONTINUOUS = {"name": "continuous", "env": {}, "batch": 48, "mode": "continuous"}
MODES = ("batches", "sorted", "continuous", "stream")


def in_batches(model, tokenizer, prompt_ids, *, width, on_done=None, **sampling):
    """The evaluation's generation until 2026-12-05: ``generate_batch`` on consecutive batches of ``width``."""
    from moslim.policy.fast import generate_batch

    completions, logprobs = [], []
    for start in range(0, len(prompt_ids), width):
        done = generate_batch(model, tokenizer, prompt_ids[start:start + width], **sampling)
        completions += done[0]
        logprobs += done[1]
    return completions, logprobs


def run_arm(prompts: int, batch: int, mode: str) -> dict:
    """In this process: generate the cells once (``mode``: one of ``MODES``); seconds, completions, mean words."""
    from moslim.threads import configure_openmp

    openmp = configure_openmp()
    import dataclasses
    import functools

    from moslim.policy import fast

    if mode == "batches":
        fast.generate_stream = in_batches
    elif mode == "sorted":
        fast.generate_stream = functools.partial(fast.generate_stream, continuous=False)
    elif mode == "continuous":
        fast.SHARED_PREFIX_MIN = 1 << 30  # no two prompts share that many tokens
    from moslim.config import load_config
    from moslim.data.readers import read_prompts
    from moslim.evaluation import runner
    from moslim.evaluation.config import EvalConfig
    from moslim.objectives import ObjectiveSet
    from moslim.paths import resolve_path

    cfg = load_config(EvalConfig, CONFIG)
    objectives = ObjectiveSet.from_yaml(resolve_path("moslim:assets/demo/objectives.yaml"))
    prefs, _ = runner.build_grid(objectives, cfg.grid)
    records = runner.select_prompts(read_prompts(resolve_path(cfg.prompts)), prompts, cfg.prompt_seed)
    cells = runner.grid_cells(records, prefs, cfg.grid.per_prompt, cfg.prompt_seed)
    gen = dataclasses.replace(cfg.generation, batch_size=batch)
    start = time.perf_counter()  # the evaluation's own step, model loading (~1 s) included
    rows = runner.generate_rows(cfg.base_policy, cells, objectives, gen, progress=False)
    seconds = time.perf_counter() - start
    texts = [row["completion"] for row in rows]
    return {"seconds": seconds, "completions": len(texts), "completions_per_s": len(texts) / seconds,
            "mean_words": statistics.fmean(len(t.split()) for t in texts), "openmp": openmp}


def spawn(arm: dict, prompts: int) -> dict:
    from moslim.threads import USER_SETTINGS

    env = {k: v for k, v in os.environ.items() if k not in USER_SETTINGS}
    env.update(arm["env"])
    cmd = [sys.executable, __file__, "--prompts", str(prompts), "--arm-batch", str(arm["batch"]),
           "--arm-mode", arm["mode"]]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"arm {arm['name']} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=32, help="held-out prompts (x 6 preferences each)")
    parser.add_argument("--rounds", type=int, default=1, help="times each arm runs, alternating")
    parser.add_argument("--batch-sizes", type=int, nargs="*", default=[], help="extra 'after' arms")
    parser.add_argument("--arms", default="before,batches,sorted,continuous,after",
                        help="which of the arms to run (comma-separated; 'before' is always run: the ratios' base)")
    parser.add_argument("--arm-batch", type=int, help=argparse.SUPPRESS)  # a child process: one arm
    parser.add_argument("--arm-mode", choices=MODES, default="stream", help=argparse.SUPPRESS)
    parser.add_argument("--out", default="runs/bench/eval_throughput.json")
    args = parser.parse_args()
    if args.arm_batch is not None:
        print(json.dumps(run_arm(args.prompts, args.arm_batch, args.arm_mode)))
        return
    from moslim.config import load_config
    from moslim.evaluation.config import EvalConfig

    batch = load_config(EvalConfig, CONFIG).generation.batch_size
    arms = [BEFORE, BATCHES, SORTED, CONTINUOUS, {"name": "after", "env": {}, "batch": batch, "mode": "stream"}]
    chosen = {"before", *args.arms.split(",")}
    unknown = chosen - {arm["name"] for arm in arms}
    if unknown:
        parser.error(f"--arms: unknown {', '.join(sorted(unknown))}; expected some of "
                     f"{', '.join(arm['name'] for arm in arms)}")
    arms = [arm for arm in arms if arm["name"] in chosen]
    arms += [{"name": f"after, width {b}", "env": {}, "batch": b, "mode": "stream"} for b in args.batch_sizes
             if b != batch]
    results: dict[str, list[dict]] = {arm["name"]: [] for arm in arms}
    for round_ in range(args.rounds):
        for arm in arms:
            results[arm["name"]].append(spawn(arm, args.prompts))
            r = results[arm["name"]][-1]
            print(f"round {round_ + 1} {arm['name']:>16}: {r['completions']} completions in {r['seconds']:.1f} s "
                  f"= {r['completions_per_s']:.2f}/s (mean {r['mean_words']:.0f} words; {r['openmp']})", flush=True)
    rates = {name: statistics.median(r["completions_per_s"] for r in runs) for name, runs in results.items()}
    print(f"\nmedian completions/s over {args.rounds} round(s), ratio to 'before' ({BEFORE['env']}, batch 24):")
    for arm in arms:
        print(f"  {arm['name']:>16} ({'width' if arm['mode'] == 'stream' else 'batch'} {arm['batch']:3d}): "
              f"{rates[arm['name']]:.2f}/s  "
              f"{rates[arm['name']] / rates['before']:.2f}x")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"arms": arms, "runs": results, "median_per_s": rates,
                                          "load_average": os.getloadavg()}, indent=2) + "\n")


if __name__ == "__main__":
    main()
