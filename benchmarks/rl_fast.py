"""One GRPO step on CPU: stock TRL vs moslim's fast path vs this machine's roofline, in one run.

    nice -n 5 .venv/bin/python benchmarks/rl_fast.py                 # 8 prompts x 4 generations x 128 tokens
    nice -n 5 .venv/bin/python benchmarks/rl_fast.py --stock-steps 0 # our path and the bound only

Measures, in this process: matmul throughput in the compute dtype (bf16 where the CPU runs it natively,
else float32, as ``bf16: auto`` in the configs) and memory bandwidth; from them a lower bound for one RL
step (generation: per decode step the larger of bytes moved / bandwidth and FLOPs / peak;
update: forward + backward ~ 3x forward FLOPs / peak of each prompt once and the completions' measured tokens,
no padding; reward: 0). Then runs real ``GRPOTrainer``
steps (SmolLM2-135M-Instruct, full fine-tuning, fp32 weights with bf16 autocast where native, a trivial
Python reward) with TRL's own generation and log-probs, and with ``moslim.policy.fast``, splitting each step
into generation / reward / update with the trainer's ``StepTimer``. Both paths run at the same settings,
activation checkpointing off (moslim's default on CPU); stock TRL is timed once more with TRL's own
defaults (checkpointing on). Prints a table and ratios, and writes them to ``runs/bench/rl_fast.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
from moslim.threads import configure_openmp  # noqa: E402

OPENMP = configure_openmp()  # the moslim command's OpenMP wait, before torch loads (export OMP_WAIT_POLICY to choose)

import torch  # noqa: E402

from moslim.precision import native_bf16  # noqa: E402

BF16 = native_bf16("cpu")  # what `bf16: auto` picks here: autocast and bf16 decoding, or float32 throughout
DTYPE = torch.bfloat16 if BF16 else torch.float32

QUESTIONS = [
    "What is the capital of France?", "Explain photosynthesis to a child.", "Write a haiku about cats.",
    "How do I bake bread at home?", "List three prime numbers.", "Why is the sky blue?",
    "Describe a good breakfast.", "What is machine learning?", "How do vaccines work?",
    "Give me tips for a job interview.", "What causes earthquakes?", "Summarise the plot of Hamlet.",
    "How does a bicycle stay upright?", "What is the difference between weather and climate?",
    "Suggest a name for a pet turtle.", "How can I sleep better?", "What is inflation?",
    "Explain how a rainbow forms.", "Write a short poem about the sea.", "Why do cats purr?",
    "How do airplanes fly?", "What is a black hole?", "How do I make a cup of tea?", "What is DNA?",
]


# -- roofline -------------------------------------------------------------------------------------
def best_time(fn, repeats: int) -> float:
    fn()  # warm-up (oneDNN primitive creation, page faults)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def measure_roofline() -> dict:
    n = 2048
    a, b = torch.randn(n, n, dtype=DTYPE), torch.randn(n, n, dtype=DTYPE)
    peak = 2 * n**3 / best_time(lambda: a @ b, 5)
    src = torch.empty(64 * 2**20, dtype=torch.float32)  # 256 MiB, far beyond the caches
    dst = torch.empty_like(src)
    src.fill_(1.0)
    dst.fill_(0.0)
    bandwidth = 2 * src.numel() * 4 / best_time(lambda: dst.copy_(src), 5)  # bytes read + written
    return {"dtype": str(DTYPE).removeprefix("torch."), "tflops": peak / 1e12, "bandwidth_gbs": bandwidth / 1e9}


def step_bound(config, num_params: int, prompt_len: float, rows: int, prompts: int, new_tokens: int,
               peak: float, bandwidth: float, completion_len: float | None = None) -> dict:
    """Lower bound (seconds) for one GRPO step: generation and update, weights and KV cache in DTYPE.

    Generation: ``new_tokens`` decode steps (a batch runs until its longest completion, which the cap is in
    practice). Update: forward + backward of the tokens a step needs, each prompt once and each row's completion
    (``completion_len`` tokens on average, the measured mean; the cap if None), not the padding TRL adds."""
    size = DTYPE.itemsize
    d, vocab, layers = config.hidden_size, config.vocab_size, config.num_hidden_layers
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None) or d // heads
    head_params = vocab * d
    body_flops = 2 * (num_params - head_params)  # per token, matmuls of the layers (the embedding is a lookup)

    def attention_flops(context):  # QK^T and AV per token
        return 4 * layers * heads * head_dim * context

    prefill = prompts * prompt_len * (body_flops + attention_flops(prompt_len / 2)) + prompts * 2 * head_params
    generation = prefill / peak
    for step in range(new_tokens):
        context = prompt_len + step
        flops = rows * (body_flops + 2 * head_params + attention_flops(context))
        moved = size * num_params + rows * layers * 2 * kv_heads * head_dim * context * size  # weights + KV cache
        generation += max(flops / peak, moved / bandwidth)
    completion_len = new_tokens if completion_len is None else completion_len
    tokens = prompts * prompt_len + rows * completion_len
    forward = tokens * body_flops + rows * completion_len * 2 * head_params
    forward += tokens * attention_flops((prompt_len + completion_len) / 2)
    update = 3 * forward / peak
    return {"generation": generation, "reward": 0.0, "update": update, "step": generation + update}


# -- GRPO steps -----------------------------------------------------------------------------------
def word_reward(completions, **_):
    """Trivial reward: closeness of the answer to 40 words."""
    return [-abs(len(c[0]["content"].split()) - 40) / 40 for c in completions]


def run_trainer(path: Path, rollout: str, args: argparse.Namespace, out_dir: Path, checkpointing: bool) -> dict:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from moslim.policy import fast
    from moslim.policy.train import StepTimer

    steps = args.warmup + (args.stock_steps if rollout == "stock" else args.steps)
    name = f"{rollout}-checkpointing" if checkpointing else rollout
    rows = args.prompts * args.generations
    dataset = Dataset.from_dict({"prompt": [[{"role": "user", "content": q}] for q in QUESTIONS]})
    config = GRPOConfig(output_dir=str(out_dir / name), per_device_train_batch_size=rows,
                        num_generations=args.generations, max_completion_length=args.tokens, max_steps=steps,
                        learning_rate=1e-6, bf16=BF16, use_cpu=True, report_to="none", save_strategy="no",
                        logging_steps=1, seed=0, disable_tqdm=True, temperature=1.0,
                        gradient_checkpointing=checkpointing)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    trainer = GRPOTrainer(model=model, reward_funcs=[word_reward], args=config, train_dataset=dataset,
                          processing_class=tokenizer,
                          rollout_func=fast.make_rollout_func() if rollout == "fast" else None)
    trainer.add_callback(StepTimer(trainer))
    trainer.train()
    logged = [e for e in trainer.state.log_history if "time/step" in e][args.warmup:]
    split = {k: statistics.mean(e[f"time/{k}"] for e in logged) for k in ("step", "generation", "reward", "update")}
    tokens = statistics.mean(e["completions/mean_length"] for e in logged) * rows
    return {**split, "completion_tokens": tokens, "tokens_per_s": tokens / split["generation"],
            "steps_measured": len(logged), "all_steps_s": [round(e["time/step"], 2) for e in logged]}


def prompt_length(path: Path) -> float:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    lengths = [len(tokenizer.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True,
                                                 tokenize=True, return_dict=True)["input_ids"]) for q in QUESTIONS]
    return statistics.mean(lengths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--generations", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=2,
                        help="steps run first and not timed, per path (the first two allocate optimizer state, caches)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps of our path")
    parser.add_argument("--stock-steps", type=int, default=2, help="timed steps of stock TRL (0: skip it)")
    parser.add_argument("--gradient-checkpointing", action="store_true",
                        help="activation checkpointing for both paths (TRL's default; moslim turns it off on CPU)")
    parser.add_argument("--trl-defaults", type=int, default=1,
                        help="1: also time stock TRL with its own defaults (activation checkpointing on)")
    parser.add_argument("--out", default="runs/bench/rl_fast.json")
    args = parser.parse_args()

    from transformers import AutoConfig

    from moslim.models import resolve

    path = resolve(args.model)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    roof = measure_roofline()
    config = AutoConfig.from_pretrained(path)
    from transformers import AutoModelForCausalLM

    num_params = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(path).parameters())
    rows = args.prompts * args.generations
    checkpointing = args.gradient_checkpointing
    results = {"fast": run_trainer(path, "fast", args, out.parent, checkpointing)}
    bound = step_bound(config, num_params, prompt_length(path), rows, args.prompts, args.tokens,
                       roof["tflops"] * 1e12, roof["bandwidth_gbs"] * 1e9,
                       completion_len=results["fast"]["completion_tokens"] / rows)
    bound["tokens_per_s"] = rows * args.tokens / bound["generation"]
    if args.stock_steps:
        results["trl"] = run_trainer(path, "stock", args, out.parent, checkpointing)
        if args.trl_defaults and not checkpointing:
            results["trl_defaults"] = run_trainer(path, "stock", args, out.parent, True)
    results["bound"] = bound
    report = {"settings": vars(args), "threads": torch.get_num_threads(), "roofline": roof, "results": results,
              "openmp": OPENMP, "load_average": os.getloadavg()}
    out.write_text(json.dumps(report, indent=1), encoding="utf-8")
    print_table(report, args)


def print_table(report: dict, args) -> None:
    from rich.console import Console
    from rich.table import Table

    roof, results = report["roofline"], report["results"]
    table = Table(title=f"GRPO step, SmolLM2-135M, {args.prompts} prompts x {args.generations} generations x "
                        f"{args.tokens} tokens ({roof['dtype']} {roof['tflops']:.2f} TFLOPS, "
                        f"{roof['bandwidth_gbs']:.1f} GB/s, {report['threads']} threads)")
    for column in ("path", "step s", "generation s", "reward s", "update s", "gen tokens/s"):
        table.add_column(column, justify="right")
    names = {"trl_defaults": "stock TRL, TRL's defaults", "trl": "stock TRL", "fast": "moslim fast",
             "bound": "roofline bound"}
    for key in ("trl_defaults", "trl", "fast", "bound"):
        if key in results:
            r = results[key]
            table.add_row(names[key], *(f"{r[k]:.2f}" for k in ("step", "generation", "reward", "update")),
                          f"{r['tokens_per_s']:.0f}")
    Console().print(table)
    fast, bound = results["fast"], results["bound"]
    if "trl" in results:
        trl = results["trl"]
        print(f"speed-up over stock TRL: step {trl['step'] / fast['step']:.1f}x, generation "
              f"{trl['generation'] / fast['generation']:.1f}x, update {trl['update'] / fast['update']:.1f}x "
              f"(same settings)")
    if "trl_defaults" in results:
        print(f"speed-up over stock TRL with TRL's defaults (activation checkpointing): step "
              f"{results['trl_defaults']['step'] / fast['step']:.1f}x")
    print(f"ours / bound: step {fast['step'] / bound['step']:.1f}x, generation "
          f"{fast['generation'] / bound['generation']:.1f}x, update {fast['update'] / bound['update']:.1f}x")


if __name__ == "__main__":
    main()
