"""GPU check: moslim's training stages on one accelerator, with no network and no downloaded weights.

A SmolLM2-135M-sized policy and reward model are built from their configs with random weights (the sizes
of SmolLM2-135M-Instruct's config.json), with a word-level tokenizer made here. Then:

1. reward-model training steps: moslim's MultiHeadRewardModel (3 heads, the demo's objectives) on the same
   backbone shape, the masked multi-head loss, AdamW, bf16 autocast;
2. GRPO steps: moslim's RL recipe (``moslim.policy.train.build_trainer``: prompts with preferences in the
   system message, the MOSLIM reward from that reward model) on TRL's GRPOTrainer with TRL's own generation
   (``train.rollout: stock``: the CPU fast path is off), bf16;
3. PPO steps: the same recipe with ``train.algorithm: ppo`` (moslim.policy.ppo: a critic of the policy's size
   and GAE advantages on TRL's GRPO machinery), bf16.

It prints throughput and peak memory per stage, and exits non-zero when a stage fails or its loss is not finite.

    python scripts/gpu_check.py --device cuda             # what scripts/gpu_check.sh runs on one GPU
    python scripts/gpu_check.py --device cpu --tiny       # the same code on tiny sizes (tests/test_gpu_check.py)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

import torch

SRC = Path(__file__).resolve().parents[1] / "src"
if SRC.is_dir() and str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))  # run from a checkout without installing moslim

# SmolLM2-135M-Instruct's config.json (checked against the converted built-in model).
SMOLLM2_135M = dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                    num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                    rms_norm_eps=1e-5, rope_theta=100000.0, tie_word_embeddings=True)
TINY = dict(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True)

# Work per stage: (full size on a GPU, tiny on CPU).
RM_WORK = {"full": dict(steps=20, batch=32, seq_len=256), "tiny": dict(steps=2, batch=4, seq_len=16)}
GRPO_WORK = {"full": dict(max_steps=5, per_device_train_batch_size=64, num_generations=8, max_completion_length=128),
             "tiny": dict(max_steps=2, per_device_train_batch_size=4, num_generations=2, max_completion_length=8)}
# PPO: 2 completions per prompt (the least TRL's GRPO machinery takes; GAE ignores the groups), one update per
# batch of rollouts so every step's timing holds a generation (the tests run 2 PPO epochs).
PPO_WORK = {"full": dict(max_steps=4, per_device_train_batch_size=64, num_generations=2, max_completion_length=128),
            "tiny": dict(max_steps=2, per_device_train_batch_size=4, num_generations=2, max_completion_length=8)}

SPECIALS = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tokenizer(vocab_size: int):
    """A word-level tokenizer of exactly ``vocab_size`` tokens: specials, the demo prompts' words, fillers."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    text = (resources.files("moslim") / "assets" / "demo" / "prompts_train.jsonl").read_text(encoding="utf-8")
    words = sorted(set(re.findall(r"[a-z]+|[0-9]|[^\sa-z0-9]", text.lower())))
    vocab = SPECIALS + [w for w in words if w not in SPECIALS]
    vocab = vocab[:vocab_size] + [f"w{i}" for i in range(vocab_size - len(vocab))]
    backend = Tokenizer(models.WordLevel(vocab={t: i for i, t in enumerate(vocab)}, unk_token="<unk>"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>",
                                        eos_token="<|im_end|>", bos_token="<|im_start|>")
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_models(workdir: Path, sizes: dict, objectives) -> tuple[Path, Path]:
    """Random-weight policy (LlamaForCausalLM) and reward model (MultiHeadRewardModel on a LlamaModel), saved as
    safetensors folders like `moslim` writes them. Returns (policy folder, reward-model folder)."""
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaModel

    from moslim.reward.model import MultiHeadRewardModel, save_reward_model

    tokenizer = build_tokenizer(sizes["vocab_size"])
    config = LlamaConfig(**sizes, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    policy_dir, backbone_dir = workdir / "policy", workdir / "backbone"
    LlamaForCausalLM(config).save_pretrained(policy_dir)
    tokenizer.save_pretrained(policy_dir)
    LlamaModel(config).save_pretrained(backbone_dir)
    tokenizer.save_pretrained(backbone_dir)
    rm = MultiHeadRewardModel.from_backbone(backbone_dir, objectives, input_format="chat", seed=0)
    return policy_dir, save_reward_model(rm, tokenizer, workdir / "rm")


def peak_memory_gib(device: torch.device) -> float:
    """Peak accelerator memory allocated by torch since the last reset; on CPU the process's peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def rm_steps(rm_dir: Path, device: torch.device, steps: int, batch: int, seq_len: int) -> dict:
    """Training steps of the multi-head reward model on random tokens and labels (b = batch, t = seq_len):
    bf16 autocast, fp32 weights and AdamW state. The first step (kernel set-up) is not timed."""
    from moslim.reward.losses import reward_loss
    from moslim.reward.model import MultiHeadRewardModel

    model = MultiHeadRewardModel.from_pretrained(rm_dir).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    num_levels = model.num_levels.to(device)  # (k,)
    vocab = model.config.text_config.vocab_size
    generator = torch.Generator().manual_seed(0)
    reset_peak(device)
    losses, start = [], None
    for step in range(steps + 1):
        if step == 1:
            _sync(device)
            start = time.perf_counter()
        input_ids = torch.randint(len(SPECIALS), vocab, (batch, seq_len), generator=generator).to(device)
        labels = (torch.rand(batch, len(num_levels), generator=generator).to(device) * num_levels).long()  # (b, k)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            logits = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids)).logits  # (b, k, c)
        loss = reward_loss(logits, labels, num_levels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    _sync(device)
    seconds = (time.perf_counter() - start) / steps
    if not all(math.isfinite(x) for x in losses):
        raise RuntimeError(f"reward-model loss is not finite: {losses}")
    return {"steps": steps, "batch": batch, "seq_len": seq_len, "s_per_step": seconds,
            "pairs_per_s": batch / seconds, "tokens_per_s": batch * seq_len / seconds,
            "loss_first": losses[0], "loss_last": losses[-1], "peak_gib": peak_memory_gib(device),
            "params_m": sum(p.numel() for p in model.parameters()) / 1e6}


def rl_steps(policy_dir: Path, rm_dir: Path, workdir: Path, device: torch.device, work: dict,
             algorithm: str = "grpo") -> dict:
    """GRPO (or PPO) steps through moslim's RL recipe with TRL's own generation; the reward model scores in bf16."""
    from moslim.config import from_dict
    from moslim.policy.train import RLConfig, build_trainer
    from moslim.reward.scorer import RewardScorer

    cpu = device.type == "cpu"
    config = from_dict(RLConfig, {
        "policy": {"model": str(policy_dir)},
        "reward": {"model": str(rm_dir)},
        "data": {"num_named": [1, 2], "max_prompts": 256},
        "train": {"algorithm": algorithm, "rollout": "stock", "output_dir": str(workdir / algorithm)},
        "trl": {**work, "bf16": True, "use_cpu": cpu, "learning_rate": 1e-6, "logging_steps": 1,
                "save_strategy": "no", "report_to": "none", "seed": 0, "disable_tqdm": True,
                "gradient_checkpointing": False, "temperature": 1.0},
    })
    scorer = RewardScorer.from_pretrained(rm_dir, device=device, dtype=torch.bfloat16)
    trainer, *_ = build_trainer(config, scorer)
    reset_peak(device)
    start = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - start
    steps = [e for e in trainer.state.log_history if "time/step" in e]
    if len(steps) != work["max_steps"] or not all(math.isfinite(e.get("loss", 0.0)) for e in steps):
        raise RuntimeError(f"{algorithm.upper()} logged {len(steps)} of {work['max_steps']} steps: {steps}")
    timed = steps[1:] or steps  # the first step warms kernels and the generation cache up

    def mean(key):
        return sum(e[key] for e in timed) / len(timed)

    completions = work["per_device_train_batch_size"]
    new_tokens = completions * mean("completions/mean_length")
    return {"steps": len(steps), "completions_per_step": completions, "num_generations": work["num_generations"],
            "max_new_tokens": work["max_completion_length"], "wall_s": wall, "s_per_step": mean("time/step"),
            "generation_s": mean("time/generation"), "reward_s": mean("time/reward"),
            "update_s": mean("time/update"), "generated_tokens_per_s": new_tokens / mean("time/generation"),
            "completions_per_s": completions / mean("time/step"), "reward_mean": mean("reward"),
            "peak_gib": peak_memory_gib(device)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def describe(device: torch.device) -> str:
    import transformers
    import trl

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    return f"device={device} ({name}) torch={torch.__version__} transformers={transformers.__version__} " \
           f"trl={trl.__version__}"


def run(device: str, tiny: bool, workdir: Path) -> dict:
    from moslim.objectives import ObjectiveSet

    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_check: --device cuda but torch sees no CUDA device")
    size = "tiny" if tiny else "full"
    objectives = ObjectiveSet.from_yaml(resources.files("moslim") / "assets" / "demo" / "objectives.yaml")
    print(f"gpu_check: {describe(dev)}, sizes={'tiny' if tiny else 'SmolLM2-135M'}", flush=True)
    start = time.perf_counter()
    policy_dir, rm_dir = build_models(workdir, TINY if tiny else SMOLLM2_135M, objectives)
    report = {"device": describe(dev), "sizes": size, "build_s": time.perf_counter() - start}
    rm = rm_steps(rm_dir, dev, **RM_WORK[size])
    report["rm"] = rm
    print(f"rm: {rm['steps']} steps x {rm['batch']} pairs x {rm['seq_len']} tokens, bf16 autocast, "
          f"{rm['params_m']:.1f}M params: {rm['s_per_step']:.3f} s/step, {rm['pairs_per_s']:,.0f} pairs/s, "
          f"{rm['tokens_per_s']:,.0f} tokens/s, loss {rm['loss_first']:.3f} -> {rm['loss_last']:.3f}, "
          f"peak {rm['peak_gib']:.2f} GiB", flush=True)
    for algorithm, work in (("grpo", GRPO_WORK[size]), ("ppo", PPO_WORK[size])):
        rl = rl_steps(policy_dir, rm_dir, workdir, dev, work, algorithm)
        report[algorithm] = rl
        print(f"{algorithm}: {rl['steps']} steps x {rl['completions_per_step']} completions ({rl['num_generations']} "
              f"per prompt), <= {rl['max_new_tokens']} new tokens, TRL generation, bf16: {rl['s_per_step']:.2f} "
              f"s/step (generation {rl['generation_s']:.2f}, reward {rl['reward_s']:.2f}, update "
              f"{rl['update_s']:.2f}), {rl['generated_tokens_per_s']:,.0f} generated tokens/s, "
              f"{rl['completions_per_s']:.1f} completions/s, peak {rl['peak_gib']:.2f} GiB", flush=True)
    report["total_s"] = time.perf_counter() - start
    print(f"gpu_check: OK in {report['total_s']:.0f} s", flush=True)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default: cuda)")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes and work (the test suite's CPU run)")
    parser.add_argument("--workdir", type=Path, help="where the random models go (default: a temporary folder)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="moslim-gpu-check-") as tmp:
        report = run(args.device, args.tiny, args.workdir or Path(tmp))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
