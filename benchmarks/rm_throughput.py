"""Scoring throughput: one k-head reward model vs k single-head models, and the share of matmul peak.

    nice -n 5 .venv/bin/python benchmarks/rm_throughput.py [--pairs 64] [--backbones all-minilm-l6-v2 ...]

For each backbone, in one run and side by side:
1. pairs/s of one k-head model (one forward per pair scores all heads) and of k single-head models on the
   same backbone (the MORLHF set-up: k forwards per pair). Target: ratio >= 0.8 * k.
2. the forward's FLOP rate at batch 32 against this machine's plain fp32 torch.matmul rate (measured
   in turns with the forward, 2048 x 2048), as a fraction. FLOPs counted: 2 * (non-embedding parameters) per token plus
   attention's 4 * t * d per token per layer, over the padded batch.
Pairs are real (question, answer) rows from the shipped rm_eval set, scored with RewardScorer
(length-sorted batches, no grad). Heads are untrained: speed does not depend on their values.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from moslim.objectives import ObjectiveSet
from moslim.reward.data import load_examples, read_objectives
from moslim.reward.encoding import collate
from moslim.reward.model import MultiHeadRewardModel
from moslim.reward.scorer import RewardScorer

MATMUL_N = 2048
_A, _B = torch.randn(MATMUL_N, MATMUL_N), torch.randn(MATMUL_N, MATMUL_N)


def matmul_seconds() -> float:
    """Seconds of one plain fp32 (2048 x 2048) @ (2048 x 2048) matmul: 2 * 2048^3 FLOPs."""
    start = time.perf_counter()
    _A @ _B
    return time.perf_counter() - start


def forward_flops(model: MultiHeadRewardModel, batch: dict[str, torch.Tensor]) -> float:
    config = model.config.text_config
    b, t = batch["input_ids"].shape
    embedding = model.backbone.get_input_embeddings().weight.numel()
    dense = sum(p.numel() for p in model.backbone.parameters()) - embedding
    attention = 4 * t * config.hidden_size * config.num_hidden_layers  # QK^T and AV, per token
    return b * t * (2 * dense + attention)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(fns: list, repeats: int) -> list[float]:
    """Median seconds of each fn, measured in turns (a, b, a, b, ...) so load drift on a shared machine
    hits both sides alike; one warm-up call each first."""
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            times[i].append(timed(fn))
    return [statistics.median(t) for t in times]


def bench_backbone(name: str, objectives: ObjectiveSet, prompts, responses, max_length: int, repeats: int) -> dict:
    from transformers import AutoTokenizer

    from moslim.models import resolve

    path = resolve(name)
    tokenizer = AutoTokenizer.from_pretrained(path)
    multi = MultiHeadRewardModel.from_backbone(path, objectives)
    singles = [MultiHeadRewardModel.from_backbone(path, ObjectiveSet([o])) for o in objectives]
    multi_scorer = RewardScorer(multi, tokenizer, device="cpu", batch_size=32, max_length=max_length)
    single_scorers = [RewardScorer(m, tokenizer, device="cpu", batch_size=32, max_length=max_length) for m in singles]
    t_multi, t_singles = interleaved([lambda: multi_scorer.score(prompts, responses),
                                      lambda: [s.score(prompts, responses) for s in single_scorers]], repeats)

    encoded = [multi_scorer.encoder.encode(p, r) for p, r in zip(prompts[:32], responses[:32])]
    batch = collate(encoded, multi_scorer.pad_id)
    with torch.inference_mode():
        t_forward, t_matmul = interleaved([lambda: multi(**batch), lambda: matmul_seconds()], repeats)
    flops = forward_flops(multi, batch)
    k = len(objectives)
    return {"backbone": name, "k": k, "pairs": len(prompts),
            "multi_pairs_per_s": len(prompts) / t_multi, "singles_pairs_per_s": len(prompts) / t_singles,
            "ratio": t_singles / t_multi, "target": 0.8 * k,
            "batch32_shape": list(batch["input_ids"].shape), "forward_s": t_forward,
            "forward_flop_per_s": flops / t_forward, "matmul_flop_per_s": 2 * MATMUL_N**3 / t_matmul,
            "fraction_of_peak": (flops / t_forward) / (2 * MATMUL_N**3 / t_matmul)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=["all-minilm-l6-v2", "smollm2-135m-instruct"])
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="timed turns per measurement (median)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", default="runs/rm_throughput.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    objectives, _ = read_objectives("moslim:assets/demo/objectives.yaml")
    # the text only (the rows' labels include factors outside the heads)
    examples = load_examples("moslim:assets/demo/rm_eval.jsonl.gz", None, limit=args.pairs, seed=0)
    prompts, responses = [e.prompt for e in examples], [e.response for e in examples]
    results = [bench_backbone(b, objectives, prompts, responses, args.max_length, args.repeats)
               for b in args.backbones]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for r in results:
        print(f"{r['backbone']}: k={r['k']} heads, {r['pairs']} pairs at <= {args.max_length} tokens\n"
              f"  one {r['k']}-head model {r['multi_pairs_per_s']:.2f} pairs/s, {r['k']} single-head models "
              f"{r['singles_pairs_per_s']:.2f} pairs/s: ratio {r['ratio']:.2f} (target >= {r['target']:.1f})\n"
              f"  forward at batch {r['batch32_shape']}: {r['forward_flop_per_s'] / 1e9:.1f} GFLOP/s = "
              f"{100 * r['fraction_of_peak']:.0f}% of the matmul rate measured in turns with it "
              f"({r['matmul_flop_per_s'] / 1e9:.1f} GFLOP/s)")
    with open(args.out, "w") as handle:
        json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
