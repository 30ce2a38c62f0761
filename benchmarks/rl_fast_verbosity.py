"""Verbosity-only GRPO with the fast CPU path: how far a fixed wall-time budget moves controllability.

    nice -n 5 .venv/bin/python benchmarks/rl_fast_verbosity.py --minutes 12

SmolLM2-135M-Instruct is asked for a verbosity level (0-3, the demo's objective set and its exact
word-count judge) in its system message. Before and after GRPO (8 prompts x 4 generations x 128
tokens, reward = minus the distance between the judged and the requested level), greedy answers to
40 evaluation prompts x 4 levels give Spearman(requested, achieved) and the hit rate. Training stops
after ``--minutes`` of wall time. Writes ``runs/bench/rl_fast_verbosity.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
from moslim.threads import configure_openmp  # noqa: E402

configure_openmp()  # the moslim command's OpenMP wait, before torch loads; export OMP_WAIT_POLICY to choose another

import torch  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from moslim.precision import native_bf16  # noqa: E402

DEMO = Path("src/moslim/assets/demo")


def messages(question: str, level: int, objectives, template):
    from moslim.preferences import Preference, build_messages

    return build_messages(question, Preference.of({"verbosity": level}), objectives, template)


def evaluate(model, tokenizer, questions, objectives, template, spec, tokens: int) -> dict:
    from scipy.stats import spearmanr

    from moslim.data.labelling import verbosity_level
    from moslim.policy.fast import generate_batch

    levels = range(objectives["verbosity"].num_levels)
    rows = [(q, level) for q in questions for level in levels]
    prompt_ids = [list(tokenizer.apply_chat_template(messages(q, level, objectives, template),
                                                     add_generation_prompt=True, tokenize=True,
                                                     return_dict=True)["input_ids"]) for q, level in rows]
    completions = []
    for start in range(0, len(prompt_ids), 32):
        done, _ = generate_batch(model, tokenizer, prompt_ids[start:start + 32], max_new_tokens=tokens,
                                 temperature=0)
        completions += done
    achieved = [verbosity_level(tokenizer.decode(c, skip_special_tokens=True), spec) for c in completions]
    requested = [level for _, level in rows]
    return {"spearman": float(spearmanr(requested, achieved).statistic),
            "hit_rate": sum(a == r for a, r in zip(achieved, requested)) / len(rows),
            "mean_level_by_request": {str(level): sum(a for a, r in zip(achieved, requested) if r == level)
                                      / len(questions) for level in levels}}


class WallClock(TrainerCallback):
    """Stops training once ``seconds`` have passed since the first step began."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.start = None

    def on_step_begin(self, args, state, control, **kwargs):
        self.start = self.start or time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if time.perf_counter() - self.start > self.seconds:
            control.should_training_stop = True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=12.0)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--eval-prompts", type=int, default=40)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--out", default="runs/bench/rl_fast_verbosity.json")
    args = parser.parse_args()

    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from moslim.data.labelling import load_labelling, verbosity_level
    from moslim.models import resolve
    from moslim.objectives import ObjectiveSet
    from moslim.policy.fast import make_rollout_func
    from moslim.policy.train import StepTimer
    from moslim.preferences import PromptTemplate

    objectives = ObjectiveSet.from_yaml(DEMO / "objectives.yaml")
    spec = load_labelling(DEMO / "objectives.yaml", objectives)
    template = PromptTemplate()
    read = [json.loads(line)["prompt"] for line in (DEMO / "prompts_eval.jsonl").open(encoding="utf-8")]
    eval_questions = random.Random(0).sample(read, args.eval_prompts)
    train = [json.loads(line)["prompt"] for line in (DEMO / "prompts_train.jsonl").open(encoding="utf-8")]
    rng = random.Random(1)
    rng.shuffle(train)
    num_levels = objectives["verbosity"].num_levels
    levels = [rng.randrange(num_levels) for _ in train]
    dataset = Dataset.from_dict({"prompt": [messages(q, lv, objectives, template) for q, lv in zip(train, levels)],
                                 "level": levels})

    path = resolve("smollm2-135m-instruct")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    before = evaluate(model, tokenizer, eval_questions, objectives, template, spec, args.tokens)
    print("before:", before, flush=True)

    def level_reward(completions, level, **_):
        achieved = [verbosity_level(c[0]["content"], spec) for c in completions]
        return [-abs(a - r) for a, r in zip(achieved, level)]

    config = GRPOConfig(output_dir="runs/bench/rl_fast_verbosity", per_device_train_batch_size=32,
                        num_generations=4, max_completion_length=args.tokens, max_steps=10_000,
                        learning_rate=args.lr, bf16=native_bf16("cpu"), use_cpu=True,
                        report_to="none", save_strategy="no",
                        logging_steps=1, seed=0, disable_tqdm=True,
                        gradient_checkpointing=False)  # as moslim's trl_args on CPU: it only recomputes
    trainer = GRPOTrainer(model=model, reward_funcs=[level_reward], args=config, train_dataset=dataset,
                          processing_class=tokenizer, rollout_func=make_rollout_func())
    trainer.add_callback(StepTimer(trainer))
    trainer.add_callback(WallClock(args.minutes * 60))
    start = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - start
    after = evaluate(trainer.model, tokenizer, eval_questions, objectives, template, spec, args.tokens)
    print("after:", after, flush=True)
    steps = [{k: e[k] for k in ("reward", "time/step", "completions/mean_length") if k in e}
             for e in trainer.state.log_history if "time/step" in e]
    report = {"settings": vars(args), "steps": trainer.state.global_step, "train_wall_s": wall,
              "before": before, "after": after, "per_step": steps, "load_average": os.getloadavg()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1), encoding="utf-8")
    print(f"{trainer.state.global_step} GRPO steps in {wall / 60:.1f} min: Spearman {before['spearman']:.2f} -> "
          f"{after['spearman']:.2f}, hit rate {before['hit_rate']:.2f} -> {after['hit_rate']:.2f}")


if __name__ == "__main__":
    main()
