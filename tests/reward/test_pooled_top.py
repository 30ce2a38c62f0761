"""The last layer at the pooled positions only: a plain forward's logits and gradients, on every path that runs it."""

from __future__ import annotations

import pytest
import torch

from moslim.objectives import Objective, ObjectiveSet
from moslim.reward import pooled_top
from moslim.reward.encoding import PairEncoder, collate, pad_id_of, question_ends
from moslim.reward.frozen import FrozenPrefix, freeze_prefix
from moslim.reward.model import MultiHeadRewardModel

FACTORS = ObjectiveSet([Objective("unsafe_request", ("safe request", "unsafe request")),
                        Objective("refusal", ("answers", "refuses"))])
PAIRS = [("what is it ?", "the answer is paris ."), ("why ?", "safe"), ("explain the dog", "the dog " * 9),
         ("how can i help the cat ?", "harm harmful the answer")]


def _model(tiny_causal_lm_dir, objectives, factored: bool):
    extra = {"factored": "harmlessness", "factors": FACTORS, "request_at_question_end": True} if factored else {}
    return MultiHeadRewardModel.from_backbone(str(tiny_causal_lm_dir), objectives, input_format="plain", **extra)


def _batch(tokenizer, side: str):
    items = [PairEncoder(tokenizer, "plain", 64).encode(q, a) for q, a in PAIRS]
    batch = collate(items, pad_id_of(tokenizer), side)
    return items, batch, question_ends(items, side)


def _logits_and_grads(model, **inputs):
    model.zero_grad(set_to_none=True)
    logits = model.training_logits(model(**inputs))
    finite = torch.isfinite(logits)
    (logits[finite] * torch.linspace(-1, 1, int(finite.sum()))).sum().backward()  # every logit weighs in
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return logits.detach(), grads


@pytest.mark.parametrize("rows", [1, 5])
@pytest.mark.parametrize("factored", [False, True])
@pytest.mark.parametrize("side", ["right", "left"])
def test_pooled_top_gives_a_plain_forwards_logits_and_gradients(tiny_causal_lm_dir, tiny_tokenizer, objectives,
                                                                factored, side, rows, monkeypatch):
    monkeypatch.setattr(pooled_top, "PACK_ROWS", rows)
    model = _model(tiny_causal_lm_dir, objectives, factored).train()
    _, batch, ends = _batch(tiny_tokenizer, side)
    inputs = {**batch, **({"question_end": ends} if factored else {})}
    assert pooled_top.support(model.backbone, batch["input_ids"].shape[1]) is None
    shapes, below = [], []
    hook = model.backbone.layers[-1].mlp.register_forward_hook(lambda m, args, out: shapes.append(args[0].shape[:2]))
    hook_below = model.backbone.layers[0].mlp.register_forward_hook(lambda m, args, out: below.append(args[0].shape))
    fast, fast_grads = _logits_and_grads(model, **inputs)
    assert shapes == [(len(PAIRS), 2 if factored else 1)]  # the last layer's MLP ran at the read positions only
    real = int(batch["attention_mask"].sum())  # the layer below: the real tokens, rounded up to a multiple of rows
    assert real % 5 and real + 5 < batch["attention_mask"].numel()  # (so that rounding adds padded positions)
    assert below == [(-(-real // rows) * rows, model.backbone.config.hidden_size)]
    hook_below.remove()
    model.top_at_pooled = False
    plain, plain_grads = _logits_and_grads(model, **inputs)
    hook.remove()
    assert shapes[-1] == batch["input_ids"].shape
    torch.testing.assert_close(fast, plain, rtol=0, atol=1e-5)
    assert fast_grads.keys() == plain_grads.keys()
    for name in plain_grads:  # the last layer's query, o-projection and MLP included
        torch.testing.assert_close(fast_grads[name], plain_grads[name], rtol=1e-4, atol=1e-6, msg=name)
    assert len(model.backbone.layers) == 2 and all(type(m).__name__ == "LlamaDecoderLayer"
                                                   for m in model.backbone.layers)  # the swap is undone


def test_pooled_top_on_the_cached_lower_layers_trains_the_top_as_a_plain_forward(tiny_causal_lm_dir, tiny_tokenizer,
                                                                                 objectives):
    model = _model(tiny_causal_lm_dir, objectives, factored=True).train()
    freeze_prefix(model.backbone, 1)
    items, _, ends = _batch(tiny_tokenizer, "right")
    prefix = FrozenPrefix(model, 1, pad_id_of(tiny_tokenizer), torch.device("cpu"))
    states = prefix.encode(items)

    def run():
        model.zero_grad(set_to_none=True)
        logits = prefix.top_logits(states, ends)
        logits[torch.isfinite(logits)].sum().backward()
        return logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    fast, fast_grads = run()
    model.top_at_pooled = False
    plain, plain_grads = run()
    torch.testing.assert_close(fast, plain, rtol=0, atol=1e-5)
    assert fast_grads.keys() == plain_grads.keys() and any("layers.1.mlp" in n for n in fast_grads)
    for name in plain_grads:
        torch.testing.assert_close(fast_grads[name], plain_grads[name], rtol=1e-4, atol=1e-6, msg=name)


def test_the_swap_is_undone_when_the_forward_fails(tiny_causal_lm_dir, objectives):
    model = _model(tiny_causal_lm_dir, objectives, factored=False)
    layers = list(model.backbone.layers)
    with pytest.raises(RuntimeError, match="boom"):
        with pooled_top.last_layer_at(model.backbone, torch.zeros(1, 1, dtype=torch.long), torch.ones(1, 3)):
            raise RuntimeError("boom")
    assert list(model.backbone.layers) == layers


def test_support_names_what_it_cannot_reproduce(tiny_causal_lm_dir, tiny_encoder_dir, objectives):
    model = _model(tiny_causal_lm_dir, objectives, factored=False)
    assert pooled_top.support(model.backbone, 64) is None
    model.backbone.config.sliding_window = 16
    assert "sliding window 16 < 64" in pooled_top.support(model.backbone, 64)
    assert pooled_top.support(model.backbone, 16) is None
    model.backbone.config.sliding_window = None
    model.backbone.config.attention_dropout = 0.1
    assert "attention_dropout" in pooled_top.support(model.backbone, 64)
    encoder = MultiHeadRewardModel.from_backbone(str(tiny_encoder_dir), objectives)
    assert "is not one of" in pooled_top.support(encoder.backbone, 64)


def test_forwards_from_several_threads_each_get_their_own_result(tiny_causal_lm_dir, tiny_tokenizer, objectives):
    from concurrent.futures import ThreadPoolExecutor

    model = _model(tiny_causal_lm_dir, objectives, factored=True).eval()
    _, batch, ends = _batch(tiny_tokenizer, "right")
    inputs = [{k: v[i:i + 1] for k, v in {**batch, "question_end": ends}.items()} for i in range(len(PAIRS))]
    with torch.no_grad():
        alone = [model(**x).logits for x in inputs]
        with ThreadPoolExecutor(4) as pool:
            together = list(pool.map(lambda x: model(**x).logits, inputs * 8))
    for i, logits in enumerate(together):
        torch.testing.assert_close(logits, alone[i % len(PAIRS)], rtol=0, atol=1e-6)
    assert all(type(m).__name__ == "LlamaDecoderLayer" for m in model.backbone.layers)


def test_the_packed_path_runs_under_bf16_autocast_as_the_plain_one(tiny_causal_lm_dir, tiny_tokenizer, objectives,
                                                                   monkeypatch):
    monkeypatch.setattr(pooled_top, "PACK_ROWS", 5)  # padded positions in the packed rows too
    model = _model(tiny_causal_lm_dir, objectives, factored=True).train()
    _, batch, ends = _batch(tiny_tokenizer, "right")

    def run():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return _logits_and_grads(model, **batch, question_end=ends)

    fast, fast_grads = run()
    model.top_at_pooled = False
    plain, plain_grads = run()
    torch.testing.assert_close(fast.float(), plain.float(), rtol=0, atol=5e-2)  # bf16 rounds at ~1e-2
    assert fast_grads.keys() == plain_grads.keys()


def test_packed_rows_round_the_real_tokens_up_with_padded_positions_in_order():
    keep = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 1, 1, 0]], dtype=torch.bool)  # 5 real tokens of 10
    assert pooled_top.packed_rows(keep, 1).tolist() == [0, 1, 2, 7, 8]
    rounded = pooled_top.packed_rows(keep, 4).tolist()
    assert len(rounded) == 8 and rounded == sorted(rounded) and {0, 1, 2, 7, 8} <= set(rounded)
    assert pooled_top.packed_rows(keep, 16).tolist() == list(range(10))  # never more than every position
