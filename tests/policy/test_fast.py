"""The fast CPU path samples like ``model.generate`` and scores like a plain forward, inside TRL."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoModelForCausalLM
from transformers.generation.logits_process import (
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from moslim.policy import fast, fast_decode, fast_sampling
from moslim.policy.fast import completion_logprobs, generate_batch, make_rollout_func, select_rows, use_fast_path
from moslim.policy.fast_sampling import sample_next


def hf_filtered(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """The scores ``model.generate(do_sample=True)`` samples from: its own warpers, in its order."""
    warpers = LogitsProcessorList([TemperatureLogitsWarper(temperature)])
    if top_k:
        warpers.append(TopKLogitsWarper(top_k))
    if top_p < 1:
        warpers.append(TopPLogitsWarper(top_p))
    return warpers(None, logits.clone())


@pytest.fixture(scope="module")
def tiny_lm(tiny_causal_lm_dir):
    return AutoModelForCausalLM.from_pretrained(tiny_causal_lm_dir, dtype=torch.float32).eval()


PROMPTS = [[10, 11, 12, 13, 14, 15], [20, 21], [10, 11, 12, 13, 14, 15], [30, 31, 32], [40]]


# -- choosing the path ------------------------------------------------------------------------------
def test_auto_picks_fast_path_on_cpu_only_and_settings_force_it():
    assert use_fast_path("auto", "cpu") and not use_fast_path("auto", "cuda")
    assert use_fast_path("fast", "cuda") and not use_fast_path("stock", "cpu")
    with pytest.raises(ValueError, match="expected one of auto, fast, stock"):
        use_fast_path("vllm", "cpu")
    with pytest.raises(ValueError, match="rollout='trl' was renamed to 'stock'"):
        use_fast_path("trl", "cpu")


# -- sampling semantics ---------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), vocab=st.integers(2, 40), top_k=st.integers(0, 45),
       top_p=st.sampled_from([1.0, 0.99, 0.9, 0.5, 0.2, 0.01]), temperature=st.sampled_from([0.3, 1.0, 2.0]))
def test_kept_tokens_are_those_hf_warpers_keep(seed, vocab, top_k, top_p, temperature):
    logits = torch.randn(3, vocab, generator=torch.Generator().manual_seed(seed)) * 3
    expected = torch.isfinite(hf_filtered(logits, temperature, top_k, top_p))
    scores, ids, log_z = fast_sampling._candidates(logits / temperature, top_k, top_p)
    kept = torch.ones_like(expected) if ids is None else torch.zeros_like(expected).scatter(
        1, ids, torch.isfinite(scores))
    assert torch.equal(kept, expected)
    # the full vocabulary's normaliser, handed back where top-p needed it (sample_next reuses it for log-probs)
    if log_z is not None:
        assert torch.equal(log_z, torch.logsumexp(logits / temperature, dim=-1))


@pytest.mark.parametrize(("logits", "top_p", "kept"), [([0.0] * 10, 0.55, 6), ([5.0, 4.0] + [0.0] * 8, 0.8, 2)])
def test_nucleus_is_exact_inside_and_beyond_the_first_candidate_window(monkeypatch, logits, top_p, kept):
    monkeypatch.setattr(fast_sampling, "TOP_P_CANDIDATES", (2,))
    # uniform: a 0.55 nucleus needs 6 tokens, more than the window of 2, so a full sort finds them;
    # peaked: the two most likely tokens (0.70 + 0.26 of the mass) are the 0.8 nucleus, inside the window
    scores, _, _ = fast_sampling._candidates(torch.tensor([logits]), 0, top_p)
    expected = torch.isfinite(hf_filtered(torch.tensor([logits]), 1.0, 0, top_p)).sum().item()
    assert torch.isfinite(scores).sum().item() == expected == kept


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), top_p=st.sampled_from([0.95, 0.8, 0.5]))
def test_each_row_searches_wider_windows_only_for_itself(seed, top_p):
    gen = torch.Generator().manual_seed(seed)
    spread = torch.tensor([[8.0], [2.0], [0.5], [0.05]])  # peaked rows settle in 2 tokens, flat ones need a sort
    logits = torch.randn(4, 12, generator=gen) * spread
    expected = torch.isfinite(hf_filtered(logits, 1.0, 0, top_p))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fast_sampling, "TOP_P_CANDIDATES", (2, 4))
        scores, ids, log_z = fast_sampling._candidates(logits, 0, top_p)
        tokens, logprobs = sample_next(logits, top_p=top_p, generator=gen)
    # a row settled in a narrow window is padded (score -inf, id 0): only finite scores name kept tokens
    kept = torch.zeros(expected.shape, dtype=torch.int).scatter_reduce(1, ids, torch.isfinite(scores).int(), "amax")
    assert torch.equal(kept.bool(), expected)
    assert torch.equal(log_z, torch.logsumexp(logits, dim=-1))
    assert expected[torch.arange(4), tokens].all()  # never a token outside the nucleus (nor a padding id)
    assert torch.allclose(logprobs, logits.log_softmax(-1)[torch.arange(4), tokens], atol=1e-6)


def test_the_normaliser_in_row_chunks_is_torchs_to_the_bit():
    scores = torch.randn(11, 300, generator=torch.Generator().manual_seed(8)) * 4
    assert torch.equal(fast_sampling._logsumexp(scores, rows=3), torch.logsumexp(scores, dim=-1, keepdim=True))


@pytest.mark.parametrize(("temperature", "top_k", "top_p"), [(1.0, 0, 1.0), (0.7, 0, 1.0), (1.3, 3, 1.0),
                                                             (1.0, 0, 0.8), (0.8, 4, 0.6)])
def test_sampled_frequencies_match_softmax_of_kept_scores(temperature, top_k, top_p):
    logits = torch.tensor([2.0, 1.5, 1.0, 0.5, 0.0, -0.5, -1.0, -3.0])
    n = 40_000
    tokens, logprobs = sample_next(logits.expand(n, -1), temperature=temperature, top_k=top_k, top_p=top_p,
                                   generator=torch.Generator().manual_seed(0))
    expected = hf_filtered(logits[None], temperature, top_k, top_p).softmax(-1)[0]
    observed = torch.bincount(tokens, minlength=len(logits)).float() / n
    # 4 standard errors of a binomial frequency: fails on a wrong distribution, not on noise
    assert torch.all((observed - expected).abs() <= 4 * (expected * (1 - expected) / n).sqrt() + 1e-9)
    # log-probs are those of softmax(logits / T), unfiltered, as TRL's update computes them
    assert torch.allclose(logprobs, (logits / temperature).log_softmax(-1)[tokens], atol=1e-6)


def test_zero_temperature_is_greedy_and_bad_settings_are_rejected():
    logits = torch.tensor([[0.0, 3.0, 1.0], [5.0, 0.0, 1.0]])
    assert sample_next(logits, temperature=0).__getitem__(0).tolist() == [1, 0]
    for bad in ({"temperature": -1}, {"top_p": 0}, {"top_k": -2}):
        with pytest.raises(ValueError, match="expected"):
            generate_batch(None, None, [[1]], max_new_tokens=1, **bad)


def test_first_token_frequencies_match_the_models_softmax(tiny_lm):
    prompt = [10, 11, 12]
    n = 20_000
    completions, _ = generate_batch(tiny_lm, None, [prompt] * n, max_new_tokens=1, temperature=0.7, top_k=6,
                                    eos_token_ids=[], generator=torch.Generator().manual_seed(1),
                                    dtype=torch.float32)
    logits = tiny_lm(torch.tensor([prompt])).logits[:, -1].detach()
    expected = hf_filtered(logits, 0.7, 6, 1.0).softmax(-1)[0]
    observed = torch.bincount(torch.tensor([c[0] for c in completions]), minlength=len(expected)).float() / n
    assert torch.all((observed - expected).abs() <= 4 * (expected * (1 - expected) / n).sqrt() + 1e-9)


# -- decoding ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("decoder", ["static", "hf"])
def test_generation_logprobs_equal_a_plain_forward(tiny_lm, monkeypatch, decoder):
    if decoder == "hf":
        monkeypatch.setattr(fast, "static_support", lambda model, capacity: "forced for the test")
    completions, logprobs = generate_batch(tiny_lm, None, PROMPTS, max_new_tokens=12, eos_token_ids=[3, 7, 9],
                                           generator=torch.Generator().manual_seed(2), dtype=torch.float32)
    for prompt, completion, lps in zip(PROMPTS, completions, logprobs):
        ids = torch.tensor([prompt + completion])
        expected = tiny_lm(ids).logits[0, len(prompt) - 1: -1].log_softmax(-1)
        expected = expected.gather(1, torch.tensor(completion)[:, None])[:, 0]
        assert torch.allclose(torch.tensor(lps), expected, atol=1e-5)


def test_float32_decoding_on_packed_weights_gives_the_plain_decoders_logits(tiny_lm):
    if not fast_decode.packed_linears_supported(torch.float32):
        pytest.skip("oneDNN cannot run float32 linears on packed weights on this CPU")
    ids = torch.tensor([[0, 10, 11, 12], [20, 21, 22, 23]])
    mask, rows = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]]), torch.tensor([0, 0, 1])
    logits = {}
    for packed in (True, False):
        decoder = fast_decode.StaticDecoder(tiny_lm, torch.float32, rows=3, packed=packed)
        assert decoder.linear.packed is packed
        first = decoder.prefill(ids, mask, rows, capacity=8)
        logits[packed] = [first, decoder.step(torch.tensor([5, 6, 7])), decoder.step(torch.tensor([8, 9, 4]))]
    assert fast_decode.StaticDecoder(tiny_lm, torch.float32).linear.packed  # the default where oneDNN runs it
    for a, b in zip(logits[True], logits[False]):
        assert torch.allclose(a, b, atol=1e-5)


def test_bf16_generation_logprobs_are_close_to_the_float32_forward(tiny_lm):
    completions, logprobs = generate_batch(tiny_lm, None, PROMPTS, max_new_tokens=8, eos_token_ids=[],
                                           generator=torch.Generator().manual_seed(3), dtype=torch.bfloat16)
    for prompt, completion, lps in zip(PROMPTS, completions, logprobs):
        ids = torch.tensor([prompt + completion])
        expected, _ = completion_logprobs(tiny_lm, ids, torch.ones_like(ids), len(completion))
        assert (torch.tensor(lps) - expected[0]).abs().max() < 0.05


def test_greedy_completions_equal_model_generate_with_left_padding(tiny_lm):
    completions, _ = generate_batch(tiny_lm, None, PROMPTS, max_new_tokens=10, temperature=0,
                                    eos_token_ids=[5], dtype=torch.float32)
    for prompt, completion in zip(PROMPTS, completions):
        out = tiny_lm.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=10, eos_token_id=5,
                               pad_token_id=0)
        assert completion == out[0, len(prompt):].tolist()


def test_completions_end_at_their_first_eos_which_they_include(tiny_lm):
    eos = list(range(6, 40))  # many stop tokens: most rows stop early, some run to the limit
    completions, logprobs = generate_batch(tiny_lm, None, PROMPTS * 6, max_new_tokens=6, eos_token_ids=eos,
                                           generator=torch.Generator().manual_seed(4), dtype=torch.float32)
    ended = 0
    for completion, lps in zip(completions, logprobs):
        assert len(completion) == len(lps) and 1 <= len(completion) <= 6
        stops = [i for i, token in enumerate(completion) if token in eos]
        assert stops in ([], [len(completion) - 1])
        assert stops or len(completion) == 6
        ended += bool(stops)
    assert 0 < ended < len(completions)  # both cases happened, and compaction ran between them


def test_on_step_sees_every_token_once_and_stops_the_rows_it_returns(tiny_lm):
    seen: dict[int, list[int]] = {}
    caps = [2, 9, 4, 1, 9]  # per-row token caps, as a server applies them

    def on_step(rows, tokens):
        for row, token in zip(rows, tokens):
            seen.setdefault(row, []).append(token)
        return [row for row in rows if len(seen[row]) >= caps[row]]

    completions, _ = generate_batch(tiny_lm, None, PROMPTS, max_new_tokens=9, eos_token_ids=[],
                                    generator=torch.Generator().manual_seed(5), dtype=torch.float32, on_step=on_step)
    assert [len(c) for c in completions] == caps
    assert [seen[row] for row in range(len(PROMPTS))] == completions


# -- continuous batching ----------------------------------------------------------------------------
STREAM_PROMPTS = PROMPTS * 3 + [list(range(50, 62)), [60, 61]]  # a long prompt joins after short ones


def _forward_logprobs(model, prompt, completion):
    ids = torch.tensor([prompt + completion])
    expected = model(ids).logits[0, len(prompt) - 1: -1].log_softmax(-1)
    return expected.gather(1, torch.tensor(completion)[:, None])[:, 0]


@pytest.mark.parametrize("grow", [2, 32])
def test_streamed_rows_joining_mid_way_score_like_a_plain_forward(tiny_lm, monkeypatch, grow):
    monkeypatch.setattr(fast_decode, "GROW", grow)  # 2: the cache moves and grows every other step
    eos = list(range(6, 30))  # many rows end early, so places free up and the next prompts join
    joined = []
    real_admit = fast_decode.StaticDecoder.admit

    def admit(self, ids, mask, rows, capacity=None, prefix=None):
        joined.append((self.length, rows.numel()))
        return real_admit(self, ids, mask, rows, capacity, prefix)

    monkeypatch.setattr(fast_decode.StaticDecoder, "admit", admit)
    done = []
    completions, logprobs = fast.generate_stream(
        tiny_lm, None, STREAM_PROMPTS, width=4, max_new_tokens=10, eos_token_ids=eos,
        generator=torch.Generator().manual_seed(6), dtype=torch.float32, on_done=done.append)
    assert len(joined) > 3 and all(rows <= 4 for _, rows in joined)  # joined a few at a time, never over width
    assert done == sorted(done) and done[-1] == len(STREAM_PROMPTS)
    for prompt, completion, lps in zip(STREAM_PROMPTS, completions, logprobs):
        stops = [i for i, token in enumerate(completion) if token in eos]
        assert stops in ([], [len(completion) - 1]) and (stops or len(completion) == 10)
        assert torch.allclose(torch.tensor(lps), _forward_logprobs(tiny_lm, prompt, completion), atol=1e-5)


def test_a_moved_cache_is_zero_wherever_nothing_was_copied(tiny_lm, monkeypatch):
    empty = torch.empty
    monkeypatch.setattr(torch, "empty", lambda *a, **k: empty(*a, **k).fill_(float("nan")))  # recycled memory
    decoder = fast_decode.StaticDecoder(tiny_lm, torch.float32)
    decoder.prefill(torch.tensor([[5, 6, 7], [0, 8, 9]]), torch.tensor([[1, 1, 1], [0, 1, 1]]), torch.tensor([0, 1]),
                    capacity=6)
    before = decoder.cache.clone()
    decoder._relayout(used=3, length=5, capacity=9, new_rows=2)
    cache = decoder.cache
    assert cache.shape[2] == 4 and cache.shape[4] == 9 and not cache.isnan().any()
    assert torch.equal(cache[:, :, :2, :, 2:5], before[:, :, :, :, :3])  # the used columns, moved to end at 5
    rest = torch.ones(cache.shape, dtype=torch.bool)
    rest[:, :, :2, :, 2:5] = False
    assert not cache[rest].any()


SYSTEMS = [list(range(40, 57)), list(range(40, 52)) + list(range(70, 78))]  # 17 and 20 tokens, 12 shared
SHARED_PROMPTS = [system + question for question in ([10, 11], [12, 13, 14, 15], [16]) for system in SYSTEMS]
SHARED_PROMPTS += [SYSTEMS[0] + [20], SYSTEMS[0][:16], [30, 31, 32]]  # a prompt inside another's start; a loner


def test_prompts_sharing_a_start_prefill_it_once_and_score_like_a_plain_forward(tiny_lm, monkeypatch):
    prefixes = []
    real = fast_decode.StaticDecoder.prefix_keys

    def spy(self, ids, mask):
        prefixes.extend(tuple(row[m.bool()].tolist()) for row, m in zip(ids, mask))
        return real(self, ids, mask)

    monkeypatch.setattr(fast_decode.StaticDecoder, "prefix_keys", spy)
    prompts = SHARED_PROMPTS * 2  # width 4: the prompts of one start join over several admissions
    completions, logprobs = fast.generate_stream(
        tiny_lm, None, prompts, width=4, max_new_tokens=7, eos_token_ids=list(range(6, 20)),
        generator=torch.Generator().manual_seed(7), dtype=torch.float32)
    assert all(len(x) >= 16 for x in prefixes) and tuple(SYSTEMS[1]) in prefixes
    assert len(prefixes) == len(set(prefixes)) <= 3  # each shared start ran once in the whole stream
    for prompt, completion, lps in zip(prompts, completions, logprobs):
        assert torch.allclose(torch.tensor(lps), _forward_logprobs(tiny_lm, prompt, completion), atol=1e-5)


def test_the_prefix_store_drops_a_start_after_its_last_prompt_joins(tiny_lm):
    decoder = fast_decode.StaticDecoder(tiny_lm, torch.float32)
    prefixes = [tuple(SYSTEMS[0]), tuple(SYSTEMS[1]), ()]
    store = fast._PrefixStore(decoder, prefixes, [0, 1, 0, 2], torch.device("cpu"))
    keys, mask, index = store.take([1, 0], [0, 1])
    assert keys.shape == decoder.prefix_shape(2, 20) and mask.sum(-1).tolist() == [20, 17]
    assert index.tolist() == [0, 1] and set(store.keys) == {0}  # prefix 1 had one prompt: gone
    alone = decoder.prefix_keys(torch.tensor([SYSTEMS[0]]), torch.ones(1, 17, dtype=torch.long))
    assert torch.allclose(keys[:, :, 1, :, 3:], alone[:, :, 0], atol=1e-6)  # left padding changes nothing
    keys, mask, index = store.take([0, 2], [2, 3])
    assert mask.sum(-1).tolist() == [17, 0] and not store.keys
    assert torch.equal(keys[:, :, 1], torch.zeros_like(keys[:, :, 1]))  # an empty start: padding only


def test_shared_prefixes_cut_where_most_prefill_is_saved():
    a, b, c = (1,) * 20 + (2, 3), (1,) * 20 + (4,), (1,) * 19 + (5,)
    prefixes, of, suffixes = fast.shared_prefixes([a, b, c, (9, 9)], least=16)
    assert [prefixes[i] + s for i, s in zip(of, suffixes)] == [a, b, c, (9, 9)]
    # 19 tokens shared by three save more (19 x 2/3 each) than 20 shared by two (20 x 1/2)
    assert [prefixes[i] for i in of] == [(1,) * 19] * 3 + [()]
    prefixes, of, _ = fast.shared_prefixes([a, b], least=16)
    assert [prefixes[i] for i in of] == [(1,) * 20] * 2
    assert fast.shared_prefixes([(1,) * 17, (1,) * 17 + (2,)], least=16)[2] == [(1,), (2,)]  # never empty
    assert fast.shared_prefixes([a, (9, 9)], least=16) == ([], [], [a, (9, 9)])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 2), min_size=1, max_size=12), min_size=1, max_size=12, unique_by=tuple))
def test_shared_prefixes_cut_as_a_search_over_every_pair_would(prompts):
    prompts = [tuple(x) for x in prompts]
    least = 3

    def common(x, y):
        return next((i for i, (s, t) in enumerate(zip(x, y)) if s != t), min(len(x), len(y)))

    expected = []
    for i, x in enumerate(prompts):
        shared = sorted((min(common(x, y), len(x) - 1) for j, y in enumerate(prompts) if j != i), reverse=True)
        expected.append(max(((c * (1 - 1 / k), c) for k, c in enumerate(shared, start=2) if c >= least),
                            default=(0, 0))[1])
    prefixes, of, suffixes = fast.shared_prefixes(prompts, least=least)
    cuts = [len(prefixes[k]) for k in of] if prefixes else [0] * len(prompts)
    assert cuts == expected
    assert all(suffixes) and (not prefixes or [prefixes[k] + s for k, s in zip(of, suffixes)] == prompts)


@pytest.mark.parametrize("decoder", ["static", "batches", "hf"])
def test_streamed_greedy_completions_equal_model_generate(tiny_lm, monkeypatch, decoder):
    if decoder == "hf":  # no rows can join mid-way: batches of `width`
        monkeypatch.setattr(fast, "static_support", lambda model, capacity: "forced for the test")
    completions, _ = fast.generate_stream(tiny_lm, None, STREAM_PROMPTS, width=3, max_new_tokens=8, temperature=0,
                                          eos_token_ids=[5, 9, 12], dtype=torch.float32,
                                          continuous=decoder != "batches")
    for prompt, completion in zip(STREAM_PROMPTS, completions):
        out = tiny_lm.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=8, eos_token_id=[5, 9, 12],
                               pad_token_id=0)
        assert completion == out[0, len(prompt):].tolist()


def test_stream_rejects_bad_settings(tiny_lm):
    with pytest.raises(ValueError, match="width=0"):
        fast.generate_stream(tiny_lm, None, PROMPTS, width=0, max_new_tokens=4)
    with pytest.raises(ValueError, match="non-empty"):
        fast.generate_stream(tiny_lm, None, [[1], []], width=2, max_new_tokens=4)


def test_unsupported_architecture_falls_back_to_the_models_own_forward(tiny_lm):
    assert fast_decode.static_support(tiny_lm, 100) is None
    assert "GPT2" in fast_decode.static_support(type("GPT2LMHeadModel", (), {})(), 100)


# -- inside TRL -----------------------------------------------------------------------------------
def _grpo_trainer(tiny_causal_lm_dir, tmp_path, options=None, **kwargs):
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    dataset = Dataset.from_dict({"prompt": [[{"role": "user", "content": q}] for q in
                                            ["what is the capital city of france ?", "list three good things ."]]})

    def reward(completions, **_):
        return [float(len(c[0]["content"])) for c in completions]

    args = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, num_generations=2,
                      max_completion_length=8, max_steps=1, learning_rate=1e-2, use_cpu=True, report_to="none",
                      save_strategy="no", logging_steps=1, seed=0, disable_tqdm=True, **(options or {}))
    model = AutoModelForCausalLM.from_pretrained(tiny_causal_lm_dir, dtype=torch.float32)
    return GRPOTrainer(model=model, reward_funcs=[reward], args=args, train_dataset=dataset,
                       processing_class=AutoTokenizer.from_pretrained(tiny_causal_lm_dir), **kwargs)


def test_rollout_func_drives_a_grpo_step_with_chat_prompts(tiny_causal_lm_dir, tmp_path):
    calls = []
    rollout = make_rollout_func()

    def spy(prompts, trainer):
        out = rollout(prompts, trainer)
        calls.append((prompts, out))
        return out

    trainer = _grpo_trainer(tiny_causal_lm_dir, tmp_path, rollout_func=spy)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    assert trainer.state.global_step == 1 and trainer._moslim_fast_logprobs
    prompts, out = calls[0]
    assert len(out["completion_ids"]) == len(prompts) == 4  # TRL repeats each prompt per generation
    tokenizer = trainer.processing_class
    assert out["prompt_ids"][0] == tokenizer.apply_chat_template(prompts[0], add_generation_prompt=True,
                                                                 tokenize=True, return_dict=True)["input_ids"]
    assert all(1 <= len(c) <= 8 for c in out["completion_ids"])
    changed = any(not torch.equal(before[n], p) for n, p in trainer.model.named_parameters())
    assert changed


def test_fast_logprobs_equal_a_plain_forward_and_trls_path_with_the_same_gradients(tiny_causal_lm_dir, tmp_path):
    trainer = _grpo_trainer(tiny_causal_lm_dir, tmp_path, {"bf16": False})  # float32: equal up to rounding
    model = trainer.model
    g = torch.Generator().manual_seed(5)
    input_ids = torch.randint(6, 90, (3, 14), generator=g)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[0, :4] = 0  # a left-padded prompt
    attention_mask[1, -3:] = 0  # a completion shorter than the others
    n = 6

    def run(fn):
        model.zero_grad()
        logps, entropies, _ = fn(model, input_ids, attention_mask, n, compute_entropy=True)
        (logps * attention_mask[:, -n:]).sum().backward()
        return logps.detach(), entropies.detach(), [p.grad.clone() for p in model.parameters()]

    trl_logps, trl_entropies, trl_grads = run(trainer._get_per_token_logps_and_entropies)
    fast.enable_fast_logprobs(trainer)
    logps, entropies, grads = run(trainer._get_per_token_logps_and_entropies)

    def plain(model, ids, mask, n, compute_entropy):
        with trainer.accelerator.autocast():  # the same mixed precision as the trainer's update
            logits = model(input_ids=ids, attention_mask=mask).logits[:, -n - 1:-1].float() / trainer.temperature
        lp = logits.log_softmax(-1).gather(-1, ids[:, -n:, None])[..., 0]
        return lp * mask[:, -n:], torch.zeros_like(lp), None

    plain_logps, _, plain_grads = run(plain)
    valid = attention_mask[:, -n:].bool()
    assert torch.allclose(logps[valid], plain_logps[valid], atol=1e-5)
    assert torch.allclose(logps[valid], trl_logps[valid], atol=1e-5)
    assert torch.allclose(entropies[valid], trl_entropies[valid], atol=1e-5)
    for fast_grad, plain_grad, trl_grad in zip(grads, plain_grads, trl_grads):
        assert torch.allclose(fast_grad, plain_grad, atol=1e-6) and torch.allclose(fast_grad, trl_grad, atol=1e-6)


# one bucket of every row / rows by length (3 distinct completion lengths: 5, 3, 1) / the distinct prompts' rows apart
@pytest.mark.parametrize(("overhead", "share", "passes"), [
    (10**6, True, [(3, 6), (9, 4)]),
    (0, True, [(3, 6), (6, 4), (2, 2), (1, 0)]),
    (0, False, [(6, 10), (2, 8), (1, 6)]),
])
def test_groups_sharing_a_prompt_score_like_a_plain_forward_with_the_same_gradients(tiny_causal_lm_dir, monkeypatch,
                                                                                     overhead, share, passes):
    monkeypatch.setattr(fast, "BUCKET_OVERHEAD", overhead)
    model = AutoModelForCausalLM.from_pretrained(tiny_causal_lm_dir, dtype=torch.float32)
    g = torch.Generator().manual_seed(7)
    p, n = 6, 5
    prompts = torch.randint(6, 90, (3, p), generator=g)
    input_ids = torch.cat([prompts.repeat_interleave(3, dim=0), torch.randint(6, 90, (9, n), generator=g)], dim=1)
    input_ids[8, :p] = input_ids[0, :p]  # a group member away from its group
    if not share:
        input_ids[:, :p] = torch.randint(6, 90, (9, p), generator=g)  # nine distinct prompts
    attention_mask = torch.ones_like(input_ids)
    attention_mask[3:6, :2] = 0  # a left-padded prompt
    attention_mask[[1, 4], -2:] = 0  # completions shorter than the others
    attention_mask[7, -4:] = 0  # a one-token completion
    calls = []
    model.model.register_forward_hook(lambda module, args, kwargs, out: calls.append(tuple(kwargs["input_ids"].shape)),
                                      with_kwargs=True)

    def run(fn):
        model.zero_grad()
        logps = fn()
        (logps * attention_mask[:, -n:]).sum().backward()
        return logps.detach(), [p.grad.clone() for p in model.parameters()]

    shared, shared_grads = run(lambda: completion_logprobs(model, input_ids, attention_mask, n)[0])
    # each distinct prompt once (if shared), then each bucket of rows as far as its longest completion (a
    # one-token completion is predicted by the prompt's last position: no pass of its own)
    assert calls == [c for c in passes if c[1]]
    assert torch.equal(shared[~attention_mask[:, -n:].bool()], torch.zeros(8))

    def plain():
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, -n - 1:-1]
        return logits.log_softmax(-1).gather(-1, input_ids[:, -n:, None])[..., 0] * attention_mask[:, -n:]

    expected, expected_grads = run(plain)
    valid = attention_mask[:, -n:].bool()
    assert torch.allclose(shared[valid], expected[valid], atol=1e-5)
    for mine, theirs in zip(shared_grads, expected_grads):
        assert torch.allclose(mine, theirs, atol=1e-5)


def test_length_buckets_split_rows_at_the_least_padding_plus_overhead():
    from itertools import combinations

    from moslim.policy.fast import length_buckets

    assert length_buckets([5, 0, 3, 5, 1], overhead=0) == [[0, 3], [2], [4]]  # no padding at all; row 1 left out
    assert length_buckets([5, 0, 3, 5, 1], overhead=100) == [[0, 3, 2, 4]]  # one pass: 4 x 5 tokens
    assert length_buckets([128, 120, 30, 20], overhead=16) == [[0, 1], [2, 3]]  # 256 + 60 + 32 < 512 + 16
    assert length_buckets([0, 0]) == []
    g = torch.Generator().manual_seed(0)
    for _ in range(30):  # against every split of the sorted rows
        lengths = torch.randint(1, 40, (7,), generator=g).tolist()
        ordered = sorted(lengths, reverse=True)

        def cost(groups, lengths=lengths):
            return sum(len(group) * max(lengths[i] for i in group) + 8 for group in groups)

        best = min(sum(len(ordered[i:j]) * ordered[i] + 8 for i, j in zip((0, *cuts), (*cuts, 7)))
                   for k in range(7) for cuts in combinations(range(1, 7), k))
        groups = length_buckets(lengths, overhead=8)
        assert sorted(i for group in groups for i in group) == list(range(7))
        assert cost(groups) == best


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_token_logprobs_equal_cross_entropy_with_its_gradient_and_entropy(monkeypatch, dtype, temperature):
    monkeypatch.setattr(fast, "ENTROPY_ROWS", 3)  # several chunks, the last one partial
    g = torch.Generator().manual_seed(2)
    logits = (torch.randn(10, 37, generator=g) * 3).to(dtype)
    targets = torch.randint(0, 37, (10,), generator=g)
    targets[[2, 9]] = -100  # ignored rows: log-prob 0, no gradient
    weights = torch.randn(10, generator=g)

    mine = logits.clone().requires_grad_()
    logps, entropies = fast.TokenLogprobs.apply(mine, targets, temperature, True)
    (logps * weights).sum().backward()

    plain = logits.clone().requires_grad_()
    scaled = plain.float() / temperature
    expected = -torch.nn.functional.cross_entropy(scaled, targets, reduction="none")
    (expected * weights).sum().backward()
    log_p = scaled.detach().log_softmax(-1)

    assert logps.dtype == torch.float32 and mine.grad.dtype == dtype
    assert torch.allclose(logps, expected.detach(), atol=1e-5)
    assert torch.equal(logps[[2, 9]], torch.zeros(2))
    assert torch.allclose(entropies, -(log_p.exp() * log_p).sum(-1), atol=1e-5)
    tolerance = 1e-6 if dtype == torch.float32 else 1e-2  # bf16: the gradient is rounded to bf16 as autograd's is
    assert torch.allclose(mine.grad.float(), plain.grad.float(), atol=tolerance)
    assert not mine.grad[[2, 9]].any()
    assert not entropies.requires_grad


def test_the_trl_members_the_fast_path_relies_on_exist(tiny_causal_lm_dir, tmp_path):
    """Each private or public TRL member the fast path reads or replaces, by name: a TRL upgrade that drops one
    fails here with its name, not inside an RL step."""
    import inspect

    from moslim.policy.fast import TRL_LOGPS_PARAMETERS, TRL_MEMBERS, check_trl_members

    trainer = _grpo_trainer(tiny_causal_lm_dir, tmp_path)
    for name in TRL_MEMBERS:
        assert hasattr(trainer, name), f"GRPOTrainer has no {name}: the fast path needs it"
    parameters = inspect.signature(trainer._get_per_token_logps_and_entropies).parameters
    for name in TRL_LOGPS_PARAMETERS:
        assert name in parameters, f"_get_per_token_logps_and_entropies takes no {name}"
    check_trl_members(trainer)


def test_check_trl_members_names_what_is_missing():
    from moslim.policy.fast import check_trl_members

    class Trainer:
        accelerator = model = processing_class = None
        max_completion_length, temperature, top_p, top_k, eos_token_ids = 8, 1.0, 1.0, 0, [0]

        def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep):
            return None

    with pytest.raises(RuntimeError, match=r"batch_size=.*compute_entropy=.*trl 1\.16"):
        check_trl_members(Trainer())
    del Trainer.temperature
    with pytest.raises(RuntimeError, match="has no temperature"):
        check_trl_members(Trainer())


def test_rows_sharing_a_prompt_sum_their_gradients_in_a_fixed_order():
    # The cache's own batch_select_indices indexes with a tensor; its backward, index_put_(accumulate=True), adds
    # float rows with atomics from several threads on CPU once a layer passes 32k values, in an order that changed
    # from run to run. select_rows takes index_select, whose backward sums in index order.
    from transformers import DynamicCache

    g = torch.Generator().manual_seed(3)
    keys, values = (torch.randn(4, 3, 40, 64, generator=g, requires_grad=True) for _ in range(2))
    # 4 prompts x 4 completions (16 x 3 x 40 x 64 = 123k values), rows shuffled as GRPO hands them to the update:
    # the cache's own selection gave 37 different gradients in 200 repetitions of this case, 2 threads
    index = torch.arange(4).repeat_interleave(4)[torch.randperm(16, generator=g)]
    weights = torch.randn(16, 3, 40, 64, generator=g)

    def selected(select):
        cache = DynamicCache()
        cache.update(keys * 1.0, values * 1.0, 0)
        return (select(cache) or cache).layers[0]

    mine, theirs = selected(lambda c: select_rows(c, index)), selected(lambda c: c.batch_select_indices(index))
    assert torch.equal(mine.keys, theirs.keys) and torch.equal(mine.values, theirs.values)
    assert mine.keys.grad_fn.name() == "IndexSelectBackward0"

    def gradient():
        keys.grad = None
        layer = selected(lambda c: select_rows(c, index))
        (layer.keys * weights).sum().backward()
        return keys.grad.clone()

    first = gradient()
    assert torch.allclose(first, torch.zeros_like(first).index_add_(0, index, weights), atol=1e-5)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert all(torch.equal(gradient(), first) for _ in range(20))
    finally:
        torch.set_num_threads(threads)


def test_an_entropy_bonus_gets_differentiable_entropies_equal_to_a_plain_forwards(tiny_causal_lm_dir, monkeypatch):
    monkeypatch.setattr(fast, "BUCKET_OVERHEAD", 0)  # rows in buckets of their own lengths
    model = AutoModelForCausalLM.from_pretrained(tiny_causal_lm_dir, dtype=torch.float32)
    g = torch.Generator().manual_seed(11)
    p, n = 5, 4
    input_ids = torch.cat([torch.randint(6, 90, (2, p), generator=g).repeat_interleave(2, dim=0),
                           torch.randint(6, 90, (4, n), generator=g)], dim=1)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, -2:] = 0
    valid = attention_mask[:, -n:].bool()

    def gradient(fn):
        model.zero_grad()
        logps, entropies = fn()
        (entropies * valid).sum().backward()
        return logps.detach(), entropies.detach(), [q.grad.clone() for q in model.parameters()]

    logps, entropies, grads = gradient(lambda: completion_logprobs(model, input_ids, attention_mask, n, temperature=0.7,
                                                                   entropy=True, entropy_grad=True))

    def plain():
        scaled = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, -n - 1:-1] / 0.7
        log_p = scaled.log_softmax(-1)
        return log_p.gather(-1, input_ids[:, -n:, None])[..., 0], -(log_p.exp() * log_p).sum(-1)

    plain_logps, plain_entropies, plain_grads = gradient(plain)
    assert torch.allclose(logps[valid], plain_logps[valid], atol=1e-5)
    assert torch.allclose(entropies[valid], plain_entropies[valid], atol=1e-5)
    assert torch.equal(entropies[~valid], torch.zeros(2))
    assert any(grad.abs().sum() > 0 for grad in grads)
    for mine, theirs in zip(grads, plain_grads):
        assert torch.allclose(mine, theirs, atol=1e-5)
