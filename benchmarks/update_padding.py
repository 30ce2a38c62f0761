"""The RL update's log-prob passes with and without padding: one padded pass against length buckets, in one run.

    nice -n 5 .venv/bin/python benchmarks/update_padding.py                  # overheads 16, 64, 128, 160
    nice -n 5 .venv/bin/python benchmarks/update_padding.py --overheads 128 --repeats 8

One update as GRPO runs it on CPU (``moslim.policy.fast.completion_logprobs``): the policy's forward and backward,
then the reference model's forward without gradient, on SmolLM2-135M-Instruct in float32, for 4 prompts x 4
completions whose lengths are spread as the demo's are (30-128 tokens, mean 83, the longest at the 128 cap, as
TRL pads them). Each arm sets ``BUCKET_OVERHEAD`` (the padded tokens one more bucket is worth); a huge overhead
is one bucket, every row padded to the longest. Arms run interleaved, ``--repeats`` times after one warm-up
each, and each repetition's time is divided by the padded pass's of the same repetition: the machine's drift
between repetitions (large on shared 2-core machines) cancels in the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

from moslim.threads import configure_openmp

configure_openmp()  # the moslim command's OpenMP wait, before torch loads

import torch  # noqa: E402

# completion lengths of the 16 rows: spread like the demo's (docs/fast.md, "little padding")
LENGTHS = [128, 60, 90, 128, 40, 75, 128, 100, 30, 55, 110, 85, 70, 128, 45, 65]
PADDED = 10**9  # an overhead no split beats: one bucket


def batch(prompt_tokens: int, groups: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(b, p + n) ids and mask for ``groups`` prompts x len(LENGTHS) / groups completions; n = max(LENGTHS)."""
    g = torch.Generator().manual_seed(seed)
    n, b = max(LENGTHS), len(LENGTHS)
    prompts = torch.randint(100, 40000, (groups, prompt_tokens), generator=g).repeat_interleave(b // groups, 0)
    ids = torch.cat([prompts, torch.randint(100, 40000, (b, n), generator=g)], 1)
    mask = torch.ones_like(ids)
    mask[: b // groups, :10] = 0  # one left-padded prompt
    for row, length in enumerate(LENGTHS):
        mask[row, prompt_tokens + length:] = 0
    return ids, mask, n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--overheads", type=int, nargs="+", default=[16, 64, 128, 160])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--prompt-tokens", type=int, default=90,
                        help="the demo's prompts: ~90 tokens with the chat template")
    args = parser.parse_args()

    from transformers import AutoModelForCausalLM

    from moslim.models import resolve
    from moslim.policy import fast

    model = AutoModelForCausalLM.from_pretrained(resolve(args.model), dtype=torch.float32)
    fast.prefer_eager_attention(model)
    ids, mask, n = batch(args.prompt_tokens, groups=4)

    def update(overhead: int) -> float:
        fast.BUCKET_OVERHEAD = overhead
        start = time.perf_counter()
        model.zero_grad()
        logps, _ = fast.completion_logprobs(model, ids, mask, n)
        (logps * mask[:, -n:]).sum().backward()
        with torch.no_grad():  # the reference model's pass (the same weights: the same cost)
            fast.completion_logprobs(model, ids, mask, n)
        return time.perf_counter() - start

    arms = [PADDED, *args.overheads]
    for overhead in arms:
        update(overhead)  # warm-up: allocations of each arm's shapes
    times = {overhead: [] for overhead in arms}
    for _ in range(args.repeats):
        for overhead in arms:
            times[overhead].append(update(overhead))
    tokens = sum(LENGTHS)
    print(f"{len(LENGTHS)} completions, {tokens} tokens ({tokens / (len(LENGTHS) * n):.0%} of the padded "
          f"{len(LENGTHS)} x {n}), prompts of {args.prompt_tokens} tokens, {torch.get_num_threads()} threads, "
          f"{args.repeats} interleaved repetitions")
    print(f"{'arm':>22}  {'buckets':>7}  {'computed tokens':>15}  {'median s':>8}  ratio to padded (median of pairs)")
    for overhead in arms:
        buckets = fast.length_buckets(LENGTHS, overhead)
        computed = sum(len(bucket) * LENGTHS[bucket[0]] for bucket in buckets)
        ratio = statistics.median(t / p for t, p in zip(times[overhead], times[PADDED]))
        name = "one padded pass" if overhead == PADDED else f"overhead {overhead}"
        median = statistics.median(times[overhead])
        print(f"{name:>22}  {len(buckets):>7}  {computed:>15}  {median:>8.2f}  {ratio:.2f}")


if __name__ == "__main__":
    main()
