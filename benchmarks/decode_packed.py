"""The fast decoder's float32 matmuls, side by side in one run: ``F.linear`` on plain weights (the decoder until
2026-12-05 in float32) against oneDNN on weights reordered once (``torch.ops.mkldnn``, "packed", as the decoder
already did in bf16).

    nice -n 5 .venv/bin/python benchmarks/decode_packed.py                 # 16 and 32 rows
    nice -n 5 .venv/bin/python benchmarks/decode_packed.py --rows 32 --rounds 5

For SmolLM2-135M-Instruct in float32:
1. each projection shape a decode step multiplies (the fused q/k/v, o, gate/up, down, the tied head), both ways
   (the best of 30 calls);
2. a rollout as RL samples it (``fast.generate_batch``: ``--prompts`` chat prompts x 4 completions, 128 tokens,
   temperature 1), with a decoder built each way, alternating over ``--rounds``, each round with the same seed;
   the time includes building the decoder (casting and reordering the weights), as each RL step does.
Prints milliseconds / seconds and the ratio plain / packed; writes ``runs/bench/decode_packed.json``. The two
paths round differently, so sampled completions may part after some tokens: their mean lengths are printed.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import time
from pathlib import Path

from moslim.threads import configure_openmp

configure_openmp()

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[16, 32], help="rows for the shapes (default: 16 32)")
    parser.add_argument("--prompts", type=int, default=8, help="distinct prompts in the rollout, x 4 (default: 8)")
    parser.add_argument("--tokens", type=int, default=128, help="new tokens per completion (default: 128)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rollout rounds per path (default: 3)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/decode_packed.json"))
    args = parser.parse_args()

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from moslim.models import resolve
    from moslim.policy import fast
    from moslim.policy.fast_decode import StaticDecoder, packed_linears_supported

    if not packed_linears_supported(torch.float32):
        sys.exit("oneDNN cannot run float32 linears on packed weights here: nothing to compare")
    sys.path.insert(0, str(Path(__file__).parent))
    from rl_fast import QUESTIONS, best_time

    path = resolve("smollm2-135m-instruct")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    config = model.config
    d, inter, vocab = config.hidden_size, config.intermediate_size, config.vocab_size
    e = d // config.num_attention_heads
    qkv = (config.num_attention_heads + 2 * config.num_key_value_heads) * e
    shapes = {"q/k/v": (qkv, d), "o": (d, d), "gate, up": (inter, d), "down": (d, inter), "head": (vocab, d)}
    result: dict = {"threads": torch.get_num_threads(), "shapes": {}, "rollout": {}}
    print(f"{torch.get_num_threads()} threads, float32")
    for rows in args.rows:
        for name, (o, i) in shapes.items():
            x, w = torch.randn(rows, i), torch.randn(o, i)
            packed_w = torch.ops.mkldnn._reorder_linear_weight(w, rows)
            plain = best_time(functools.partial(F.linear, x, w), 30) * 1e3
            pointwise = torch.ops.mkldnn._linear_pointwise
            packed = best_time(functools.partial(pointwise, x, packed_w, None, "none", [], ""), 30) * 1e3
            result["shapes"][f"{rows} rows, {name}"] = {"plain_ms": plain, "packed_ms": packed}
            print(f"{rows:3d} rows  {name:8s} {i:5d} -> {o:5d}: F.linear {plain:7.3f} ms   packed {packed:7.3f} ms"
                  f"   ratio {plain / packed:.2f}")

    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True,
                                             tokenize=True, return_dict=True)["input_ids"]
               for q in QUESTIONS[:args.prompts]]
    rows = [p for p in prompts for _ in range(4)]
    capacity = max(map(len, prompts)) + args.tokens
    times: dict[str, list[float]] = {"plain": [], "packed": []}
    lengths: dict[str, list[float]] = {"plain": [], "packed": []}
    for round_ in range(args.rounds + 1):  # round 0 warms both up, unrecorded
        for name in ("plain", "packed"):
            generator = torch.Generator().manual_seed(round_)
            start = time.perf_counter()
            decoder = StaticDecoder(model, torch.float32, len(rows), packed=name == "packed")
            completions, _ = fast.generate_batch(model, tokenizer, rows, max_new_tokens=args.tokens,
                                                 generator=generator, dtype=torch.float32, decoder=decoder)
            if round_:
                times[name].append(time.perf_counter() - start)
                lengths[name].append(statistics.mean(map(len, completions)))
    plain, packed = statistics.median(times["plain"]), statistics.median(times["packed"])
    result["rollout"] = {"rows": len(rows), "capacity": capacity, "seconds": times, "mean_tokens": lengths}
    print(f"rollout, {len(rows)} rows x <= {args.tokens} tokens (median of {args.rounds}): plain {plain:.2f} s, "
          f"packed {packed:.2f} s, ratio {plain / packed:.2f}; mean completion tokens "
          f"{statistics.mean(lengths['plain']):.1f} vs {statistics.mean(lengths['packed']):.1f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
