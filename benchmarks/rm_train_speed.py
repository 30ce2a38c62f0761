"""Reward-model training cost per example: the old recipe, bf16, and frozen cached layers, against a roofline.

    nice -n 5 .venv/bin/python benchmarks/rm_train_speed.py [--rows 64] [--batch 32] [--repeats 5]

The demo's reward model (``configs/demo/rm.yaml``: SmolLM2-135M-Instruct cut to 8 layers, 128 tokens, real
rows of the shipped training set) trained three ways, timed in turns in this one process:

- ``full fp32``: every layer trained, fp32 (the recipe before the cache);
- ``full bf16``: every layer trained, bf16 autocast;
- ``cached bf16``: embeddings + the first ``freeze_layers`` layers run once per row (no gradients, bf16) and
  kept; each step runs only the top layers and the heads on the cache (the demo's recipe), the last layer at
  the positions the heads read only and the layers below it at the batch's real tokens only
  (``moslim.reward.pooled_top``);
- ``cached bf16, padding computed``: the same with the layers below the last one over the padded batch (the
  recipe before 2026-12-07's change);
- ``cached bf16, whole top``: ... and the last layer at every token too (the recipe before 2026-12-06's
  change); the three cached arms are timed in turns.

On a CPU without native bf16 (AVX2 only: ``moslim.precision``) bf16 is emulated and the demo trains in float32
(``bf16: auto``): there the bf16 arm is left out and the cached arm runs in fp32 (``cached fp32``).

A step is forward + loss + backward + AdamW on ``--batch`` rows. The bound of each step is its FLOPs over
this machine's matmul rate measured in the same run (fp32 for fp32 steps, bf16 for bf16; for the cached
arms the median of the rates measured before and between their passes, as the machine drifts): 6 FLOPs per
trained weight per token (forward, gradient of the input and of the weight), 4 per frozen weight that the
backward must still pass through (forward and input gradient), 2 per weight of the cache pass, plus
attention's scores; the last layer of a ``pooled`` step counts its key/value projections at every token and
the whole layer at the read positions only. Tokens are the batch's real tokens (no padding counted). The full
arms run the plain forward (every layer at every token). Prints ms per training example,
each path's ratio to its bound, and the cost of E epochs over the same rows (the cache paid once).
Writes ``runs/bench/rm_train_speed.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

from moslim.threads import configure_openmp  # noqa: E402

configure_openmp()  # the moslim command's OpenMP wait, before torch loads; export OMP_WAIT_POLICY to choose another

import torch  # noqa: E402

from moslim.precision import native_bf16  # noqa: E402

BF16 = native_bf16("cpu")  # what `bf16: auto` picks on this CPU
CACHED_DTYPE = "bf16" if BF16 else "fp32"  # the cached arm's dtype: the demo's
CACHED = f"cached {CACHED_DTYPE}"
WHOLE = f"{CACHED}, whole top"
PADDED = f"{CACHED}, padding computed"  # the layers below the last one over the padded batch, as before packing


def matmul_rate(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of a plain (n x n) @ (n x n) matmul in ``dtype``: the best of ``repeats`` after a warm-up."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = min(_seconds(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def layer_params(model) -> tuple[int, int]:
    """(weights of one transformer layer, weights of the heads)."""
    from moslim.reward.frozen import layer_stack

    owner, name = layer_stack(model.backbone)
    layer = getattr(owner, name)[0]
    return sum(p.numel() for p in layer.parameters()), sum(p.numel() for p in model.heads.parameters())


def kv_params(model) -> int:
    """Weights of one layer's key and value projections (what the pooled last layer runs at every token)."""
    from moslim.reward.frozen import layer_stack

    owner, name = layer_stack(model.backbone)
    attention = getattr(owner, name)[0].self_attn
    return sum(p.numel() for m in (attention.k_proj, attention.v_proj) for p in m.parameters())


def step_flops(rows: int, tokens: int, squares: int, per_layer: int, heads: int, hidden: int, trained: int,
               frozen: int, pooled: tuple[int, int] | None = None) -> float:
    """FLOPs of one training step: ``trained`` layers with weight gradients, ``frozen`` layers the backward
    passes through (0 when they sit below every trained layer, as in the cached path), the heads.
    ``squares`` = sum over rows of t_i^2 (attention's QK^T and AV: 4 * t^2 * d per layer forward).
    ``pooled`` = (key/value weights of a layer, positions read per row): the last trained layer runs its
    key/value projections at every token and the rest of the layer at those positions only."""
    attention = 4 * squares * hidden
    flops = (trained * (6 * per_layer * tokens + 3 * attention) + frozen * (4 * per_layer * tokens + 2 * attention)
             + 6 * heads * rows)  # the heads read one pooled vector per row
    if pooled is not None:
        kv, reads = pooled
        positions = reads * rows
        last = 6 * kv * tokens + 6 * (per_layer - kv) * positions + 3 * 4 * hidden * positions * tokens / rows
        flops -= 6 * per_layer * tokens + 3 * attention - last
    return flops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/demo/rm.yaml")
    parser.add_argument("--rows", type=int, default=64, help="training rows timed (several steps)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5, help="timed passes over the rows per path")
    parser.add_argument("--epochs", type=int, default=2, help="epochs for the whole-run cost line")
    parser.add_argument("--out", default="runs/bench/rm_train_speed.json")
    args = parser.parse_args()
    torch.manual_seed(0)

    from transformers import AutoTokenizer

    from moslim.config import load_config
    from moslim.models import resolve
    from moslim.reward.config import RewardTrainConfig
    from moslim.reward.data import label_tensor, load_examples, read_factors, read_objectives
    from moslim.reward.encoding import PairEncoder, model_batch, pad_id_of, question_ends
    from moslim.reward.frozen import FrozenPrefix, freeze_prefix
    from moslim.reward.losses import per_head_losses
    from moslim.reward.train import build_model

    config = load_config(RewardTrainConfig, args.config)
    objectives, labelling = read_objectives(config.data.objectives)
    path = resolve(config.model.backbone)
    tokenizer = AutoTokenizer.from_pretrained(path)
    pad_id = pad_id_of(tokenizer)
    factors = read_factors(config.data.objectives)  # the demo's rows carry factor labels (unsafe_request, refusal)
    examples = load_examples(config.data.train, objectives.extended(factors), args.rows, seed=0)
    section = config.model
    n_frozen = section.freeze_layers or 6
    full_section = dataclasses.replace(section, freeze_layers=None)
    model = build_model(full_section, path, tokenizer, objectives, labelling, seed=0,
                        factors=factors if section.factored else None)
    trained = model.training_objectives  # what trains: the heads, and a factored head's two factors
    labels = label_tensor(examples, trained, strict=False)
    encoder = PairEncoder(tokenizer, model.config.input_format, config.data.max_length)
    encoded = [encoder.encode(e.prompt, e.response) for e in examples]
    device = torch.device("cpu")
    n_layers = model.config.text_config.num_hidden_layers
    hidden = model.config.text_config.hidden_size
    per_layer, heads = layer_params(model)
    batches = [list(range(i, min(i + args.batch, len(encoded)))) for i in range(0, len(encoded), args.batch)]
    tokens = [sum(len(encoded[i].input_ids) for i in rows) for rows in batches]
    squares = [sum(len(encoded[i].input_ids) ** 2 for i in rows) for rows in batches]

    rates = {"fp32": matmul_rate(torch.float32)}
    if BF16:  # an emulated bf16 matmul of this size takes minutes, and no arm would use its rate
        rates["bf16"] = matmul_rate(torch.bfloat16)
    print("matmul rate: " + ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in rates.items()), flush=True)

    num_levels = trained.num_levels

    def logits_of(rows: list[int], prefix, states):
        """Training logits (b, k, c): a plain forward, or the top layers on the cached states."""
        items = [encoded[i] for i in rows]
        if prefix is None:
            return model.training_logits(model(**model_batch(items, pad_id, model.needs_question_end)))
        return prefix.top_logits([states[i] for i in rows], question_ends(items))

    def make_pass(bf16: bool, prefix, states=None):
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=1e-5)

        def one_pass() -> None:
            for rows in batches:
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    logits = logits_of(rows, prefix, states)
                losses, _ = per_head_losses(logits, labels[rows], num_levels)
                losses.sum().backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
        return one_pass

    model.train()
    model.top_at_pooled = False  # the full arms: the plain forward
    passes = {"full fp32": make_pass(False, None)}
    if BF16:
        passes["full bf16"] = make_pass(True, None)
    else:
        print("this CPU has no native bf16 (emulated, ~8x slower than fp32): the demo trains in fp32, so does the "
              "cached path here; the full bf16 arm is left out", flush=True)
    times: dict[str, list[float]] = {name: [] for name in passes}
    for fn in passes.values():
        fn()  # warm-up
    for _ in range(args.repeats):
        for name, fn in passes.items():
            times[name].append(_seconds(fn))

    # The cached path: the same model with its lower layers frozen; the cache is timed once (it is paid once).
    freeze_prefix(model.backbone, n_frozen)
    prefix = FrozenPrefix(model, n_frozen, pad_id, device, batch_size=2 * args.batch, autocast=BF16)
    prefix.encode(encoded[: args.batch])  # warm-up
    cache_seconds = min(_seconds(lambda: prefix.encode(encoded)) for _ in range(2))

    top = make_pass(BF16, prefix, prefix.encode(encoded))

    def switched(attribute: str):
        def run() -> None:
            setattr(model, attribute, False)
            try:
                top()
            finally:
                setattr(model, attribute, True)
        return run

    model.top_at_pooled = True
    cached = {CACHED: top, PADDED: switched("pack_tokens"), WHOLE: switched("top_at_pooled")}
    for fn in cached.values():
        fn()  # warm-up
    times.update({name: [] for name in cached})
    cached_rates = [rates[CACHED_DTYPE]]
    for _ in range(args.repeats):  # in turns, so the machine's drift touches every arm and the rate alike
        for name, fn in cached.items():
            times[name].append(_seconds(fn))
        cached_rates.append(matmul_rate(torch.bfloat16 if BF16 else torch.float32, repeats=3))
    # A shared machine's speed drifts within minutes: the bound's rate is the median of the rates measured
    # between the passes (and once before them), not one reading.
    rates[CACHED_DTYPE] = statistics.median(cached_rates)
    print(f"{CACHED_DTYPE} matmul rate over the cached passes: median {rates[CACHED_DTYPE] / 1e9:.0f} GFLOP/s "
          f"(range {min(cached_rates) / 1e9:.0f}-{max(cached_rates) / 1e9:.0f})", flush=True)

    n_rows, n_tokens, n_squares = len(encoded), sum(tokens), sum(squares)
    bounds = {
        f"full {dtype}": step_flops(n_rows, n_tokens, n_squares, per_layer, heads, hidden, n_layers, 0) / rate
        for dtype, rate in rates.items()
    }
    reads = 2 if model.needs_question_end else 1  # the last token, and the question's for the request factor
    bounds[CACHED] = step_flops(n_rows, n_tokens, n_squares, per_layer, heads, hidden, n_layers - n_frozen, 0,
                                pooled=(kv_params(model), reads)) / rates[CACHED_DTYPE]
    bounds[PADDED] = bounds[CACHED]  # the same work; the padding is waste
    bounds[WHOLE] = step_flops(n_rows, n_tokens, n_squares, per_layer, heads, hidden, n_layers - n_frozen, 0) \
        / rates[CACHED_DTYPE]
    cache_bound = (2 * per_layer * n_tokens + 4 * n_squares * hidden) * n_frozen / rates[CACHED_DTYPE]
    report = {"settings": vars(args), "rows": n_rows, "tokens": n_tokens, "layers": n_layers, "frozen": n_frozen,
              "matmul_gflops": {k: v / 1e9 for k, v in rates.items()}, "paths": {}}
    print(f"\n{n_rows} rows ({n_tokens} tokens), batches of {args.batch}, {n_layers} layers "
          f"({n_frozen} frozen in the cached path); median of {args.repeats} passes\n")
    print(f"{'path':<32} {'ms/example':>11} {'bound ms':>9} {'x bound':>8} {'vs full fp32':>13}")
    base = statistics.median(times["full fp32"]) / n_rows
    for name, values in times.items():
        per = statistics.median(values) / n_rows
        bound = bounds[name] / n_rows
        report["paths"][name] = {"ms_per_example": 1e3 * per, "bound_ms_per_example": 1e3 * bound,
                                 "ratio_to_bound": per / bound, "speedup_vs_full_fp32": base / per}
        print(f"{name:<32} {1e3 * per:>11.2f} {1e3 * bound:>9.2f} {per / bound:>8.2f} {base / per:>12.2f}x")
    cache_per = cache_seconds / n_rows
    print(f"{'cache (once)':<32} {1e3 * cache_per:>11.2f} {1e3 * cache_bound / n_rows:>9.2f} "
          f"{cache_seconds / cache_bound:>8.2f}")
    top_per = statistics.median(times[CACHED]) / n_rows
    whole = {"full fp32": args.epochs * base, CACHED: cache_per + args.epochs * top_per}
    print(f"\n{args.epochs} epochs per example: full fp32 {1e3 * whole['full fp32']:.1f} ms, {CACHED} "
          f"{1e3 * whole[CACHED]:.1f} ms (cache included): {whole['full fp32'] / whole[CACHED]:.2f}x")
    pooled_gain = statistics.median(times[WHOLE]) / statistics.median(times[PADDED])
    print(f"the last layer at the read positions only: {pooled_gain:.2f}x the whole top layer's step "
          f"(medians of {args.repeats} passes in turns)")
    report["pooled_top_speedup"] = pooled_gain
    packed_gain = statistics.median(times[PADDED]) / statistics.median(times[CACHED])
    print(f"the layers below it at the real tokens only: {packed_gain:.2f}x the padded batch's step")
    report["packed_speedup"] = packed_gain
    report["cached_rates_gflops"] = [r / 1e9 for r in cached_rates]
    report["cache"] = {"ms_per_example": 1e3 * cache_per, "ratio_to_bound": cache_seconds / cache_bound}
    report["epochs_ms_per_example"] = {k: 1e3 * v for k, v in whole.items()}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1), encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
