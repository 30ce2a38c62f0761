"""Rewards-in-Context (RiC): supervised fine-tuning on offline answers with their rewards written in the prompt.

# n = offline rows, m = compared objectives

1. Score the offline data (``ric.data``: (prompt, response) rows, e.g. the demo's reward-model training set)
   with the reward model: per objective the head's 0-1 score (:mod:`moslim.baselines.rewards`) -> (n, m).
2. SFT (TRL ``SFTTrainer``, loss on the answer only) on chats whose system message carries those scores:
   ``"You are a helpful assistant. Rewards (0-1): verbosity 0.53, harmlessness 1.00"``.
3. Optional online rounds: generate at the desired rewards of grid preferences, score the answers, write the
   rewards they *achieved* into their prompts (RiC's relabelling), add them to the data and SFT again.
4. At inference a preference ``w`` becomes desired rewards by RiC's mapping (:func:`ric_desired_rewards`),
   with r_min / r_max the offline data's extremes, saved in ``final/ric.json``.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from moslim.baselines.config import BaselineConfig
from moslim.baselines.grid import ric_desired_rewards, ric_system_message, weight_grid
from moslim.baselines.recipes import Stages, read_json, write_json
from moslim.baselines.rewards import head_scores
from moslim.precision import resolve_bf16

log = logging.getLogger(__name__)

INFO_FILE = "ric.json"
SFT_RUN = "sft_run.json"


def score_rows(scorer, questions: list[str], responses: list[str], names: list[str]) -> list[dict[str, float]]:
    """Each (question, response) -> ``{objective: 0-1 score}`` for the compared objectives."""
    objectives = scorer.objectives
    with torch.no_grad():
        probs = scorer.score(questions, responses).float()  # (n, k, c)
    scores = head_scores(probs, objectives.num_levels)[:, [objectives.index(n) for n in names]]  # (n, m)
    return [{n: round(float(v), 4) for n, v in zip(names, row)} for row in scores.tolist()]


def score_offline(cfg: BaselineConfig, scorer, folder: Path) -> dict[str, Any]:
    """Stage 1: ``data.jsonl`` (question, response, scores) and ``data.json`` (reward ranges; the marker)."""
    from moslim.data.readers import read_examples, write_jsonl
    from moslim.data.schema import prompt_text
    from moslim.paths import resolve_path

    names = cfg.grid.objectives
    # The text only: the reward model scores the rows, and their own labels may name objectives or factors
    # outside its heads (the demo's rows carry unsafe_request / refusal)
    examples = read_examples(resolve_path(cfg.ric.data), None)
    random.Random(cfg.ric.seed).shuffle(examples)
    examples = examples[: cfg.ric.max_examples]
    questions = [prompt_text(e.prompt) for e in examples]
    scores = score_rows(scorer(), questions, [e.response for e in examples], names)
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(folder / "data.jsonl", [{"id": e.id, "question": q, "response": e.response, "scores": s}
                                        for e, q, s in zip(examples, questions, scores)])
    low = [min(s[n] for s in scores) for n in names]
    high = [max(s[n] for s in scores) for n in names]
    write_json(folder / "data.json", {"objectives": names, "low": low, "high": high, "rows": len(examples),
                                      "source": cfg.ric.data})
    return {"kind": "data", "rows": len(examples)}


def sft_rows(rows: list[dict[str, Any]], header: str) -> list[dict[str, Any]]:
    """Conversational prompt-completion rows for TRL: the scores in the system message, the answer as completion."""
    return [{"prompt": [{"role": "system", "content": ric_system_message(r["scores"], header)},
                        {"role": "user", "content": r["question"]}],
             "completion": [{"role": "assistant", "content": r["response"]}]} for r in rows]


def sft_args(output_dir: Path, options: dict[str, Any], steps: int):
    from trl import SFTConfig

    defaults = {"logging_steps": 1, "save_strategy": "steps", "save_steps": 50, "report_to": "none",
                "per_device_train_batch_size": 16, "max_length": 512, "learning_rate": 2e-5, "seed": 0}
    if not torch.cuda.is_available():
        defaults.update(use_cpu=True, gradient_checkpointing=False)  # as the RL recipe: recomputation costs on CPU
    if "bf16" in options:  # "auto": bf16 autocast where the device runs it natively (moslim.precision)
        use_cpu = options.get("use_cpu", defaults.get("use_cpu", False))
        options = {**options, "bf16": resolve_bf16(options["bf16"], "cpu" if use_cpu else "cuda", "ric.sft.bf16")}
    try:
        return SFTConfig(output_dir=str(output_dir), **{**defaults, **options, "max_steps": steps})
    except TypeError as err:
        raise ValueError(f"ric.sft: {err} (see trl.SFTConfig)") from None


def train_sft(start: str, rows: list[dict[str, Any]], header: str, output_dir: Path, options: dict[str, Any],
              steps: int, info: dict[str, Any]) -> dict[str, Any]:
    """SFT ``start`` on ``rows`` for ``steps`` steps (resuming from a complete checkpoint); save ``final/`` with
    ``ric.json``, then ``sft_run.json`` (the marker)."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTTrainer

    from moslim import models
    from moslim.policy.train import last_complete_checkpoint

    begin = time.perf_counter()
    path = models.resolve(start)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    trainer = SFTTrainer(model=model, args=sft_args(output_dir, options, steps),
                         train_dataset=Dataset.from_list(sft_rows(rows, header)), processing_class=tokenizer)
    checkpoint = last_complete_checkpoint(output_dir)
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    final, tmp = output_dir / "final", output_dir / ".final.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    trainer.save_model(str(tmp))  # safetensors
    (tmp / "training_args.bin").unlink(missing_ok=True)  # a pickle; the settings are in sft_run.json
    tokenizer.save_pretrained(tmp)
    write_json(tmp / INFO_FILE, info)
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    write_json(output_dir / SFT_RUN, {"final": str(final), "start": str(start),
                                      "global_step": trainer.state.global_step, "rows": len(rows),
                                      "wall_s": round(time.perf_counter() - begin, 1),
                                      "losses": losses, "resumed_from": str(checkpoint) if checkpoint else None})
    return {"kind": "sft", "steps": trainer.state.global_step}


def online_round(cfg: BaselineConfig, scorer, policy: Path, info: dict[str, Any], path: Path, round_: int) -> dict:
    """Generate at the desired rewards of grid preferences, score, relabel with the achieved scores: ``path``."""
    from moslim.baselines.evaluate import FixedSystem
    from moslim.data.readers import read_prompts, write_jsonl
    from moslim.data.schema import prompt_text
    from moslim.paths import resolve_path
    from moslim.policy.generate import generate_completions, load_policy

    rng = random.Random(cfg.ric.seed + round_)
    records = rng.sample(read_prompts(resolve_path(cfg.ric.online_prompts)),
                         k=cfg.ric.online_samples) if cfg.ric.online_samples else []
    grid = weight_grid(cfg.grid.points)
    model, tokenizer, _ = load_policy(policy)
    rows = []
    for g, weights in enumerate(grid):
        chosen = records[g::len(grid)]  # the prompts spread over the grid's points
        if not chosen:
            continue
        desired = ric_desired_rewards(weights, info["low"], info["high"])
        system = FixedSystem(ric_system_message(dict(zip(info["objectives"], desired)), info["header"]))
        questions = [prompt_text(r.prompt) for r in chosen]
        completions = generate_completions(model, questions, objectives=scorer().objectives, template=system,
                                           max_new_tokens=cfg.ric.max_new_tokens, seed=cfg.ric.seed + round_,
                                           tokenizer=tokenizer, progress=False)
        responses = [c[0] for c in completions]  # one sample each; rows of the SFT data from here on
        scores = score_rows(scorer(), questions, responses, info["objectives"])
        rows += [{"id": r.id, "question": q, "response": a, "scores": s, "desired": desired}
                 for r, q, a, s in zip(chosen, questions, responses, scores)]
    write_jsonl(path, rows)
    return {"kind": "data", "rows": len(rows)}


def ric_plan(cfg: BaselineConfig, stages: Stages, scorer) -> list[dict[str, Any]]:
    """Stages: score the offline data, SFT, then per online round: generate + relabel, SFT again. Returns the
    evaluation points: the final policy at every grid point, with RiC's desired rewards."""
    from moslim.data.readers import read_jsonl

    folder = stages.out / "ric"
    rounds = cfg.ric.online_rounds
    steps = int(cfg.ric.sft.get("max_steps") or cfg.steps_per_policy(rounds + 1))
    options = {k: v for k, v in cfg.ric.sft.items() if k != "max_steps"}
    stages.add("score offline data", folder / "data.json", lambda: score_offline(cfg, scorer, folder))

    def info() -> dict[str, Any]:
        ranges = read_json(folder / "data.json")
        return {"objectives": ranges["objectives"], "low": ranges["low"], "high": ranges["high"],
                "header": cfg.ric.header,
                "mapping": "RiC: R_i = high_i if w_i >= 1/m else low_i + m w_i (high_i - low_i)"}

    def data(upto: int) -> list[dict[str, Any]]:
        rows = read_jsonl(folder / "data.jsonl")
        for r in range(1, upto + 1):
            rows += read_jsonl(folder / f"online-{r}.jsonl")
        return rows

    def sft(r: int):
        start = cfg.ric.model if r == 0 else str(folder / f"round-{r - 1}" / "final")

        def run() -> dict[str, Any]:
            extra = train_sft(start, data(r), cfg.ric.header, folder / f"round-{r}", options, steps, info())
            return {**extra, "continued": r > 0}
        return run

    def online(r: int):
        return lambda: online_round(cfg, scorer, folder / f"round-{r - 1}" / "final", info(),
                                    folder / f"online-{r}.jsonl", r)

    stages.add("sft round 0", folder / "round-0" / SFT_RUN, sft(0))
    for r in range(1, rounds + 1):
        stages.add(f"online round {r}", folder / f"online-{r}.jsonl", online(r))
        stages.add(f"sft round {r}", folder / f"round-{r}" / SFT_RUN, sft(r))
    final = folder / f"round-{rounds}" / "final"
    return [{"index": i, "weights": list(w), "policy": str(final), "input": "desired rewards"}
            for i, w in enumerate(weight_grid(cfg.grid.points))]


def ric_prompt(policy: str | Path, weights: list[float]) -> str:
    """A trained RiC policy's system message for a preference: its saved reward ranges through RiC's mapping."""
    info = json.loads((Path(policy) / INFO_FILE).read_text(encoding="utf-8"))
    desired = ric_desired_rewards(weights, info["low"], info["high"])
    return ric_system_message(dict(zip(info["objectives"], desired)), info["header"])
