"""Fast RL on CPU inside TRL: batched sampling for rollouts and a plain forward for the update's log-probs.

- ``generate_batch``: sample completions for many prompts at once, with ``model.generate(do_sample=True,
  temperature, top_p, top_k)``'s semantics (see ``fast_sampling``) and a decoder that prefills each
  distinct prompt once, keeps a static KV cache and drops finished rows (see ``fast_decode``).
  Usable on its own (evaluation, ``moslim generate``) or through TRL.
- ``make_rollout_func``: the ``GRPOTrainer(rollout_func=...)`` that calls it with the trainer's current
  weights. Everything else (losses, logging, accelerate, checkpoints) stays TRL's.
- ``enable_fast_logprobs``: the update's per-token log-probs through ``completion_logprobs``: each
  distinct prompt of a GRPO group runs once, the head projects only the completion positions, and a
  chunked log-softmax (``TokenLogprobs``) replaces TRL's CPU path; eager attention instead of SDPA's
  slow CPU kernel. Same numbers as a plain forward, gradients intact.
- ``use_fast_path``: "auto" picks all this on CPU and the stock path elsewhere (TRL's generation, vLLM or
  ``model.generate``, CUDA kernels). ``train.rollout`` and ``moslim generate --engine`` share its values.
"""

from __future__ import annotations

import collections
import copy
import logging
import types
from collections.abc import Callable, Iterable, Sequence

import torch

from moslim.policy.fast_decode import HFDecoder, StaticDecoder, cache_argument, static_support
from moslim.policy.fast_sampling import check_sampling, sample_next
from moslim.precision import native_bf16

log = logging.getLogger(__name__)

SETTINGS = ("auto", "fast", "stock")  # train.rollout and `moslim generate --engine`
# Old values of those settings (until 2026-12-04): RL said "trl" and `moslim generate` said "hf" for the stock path.
RENAMED_SETTINGS = {"trl": "stock", "hf": "stock"}
COMPACT_BELOW = 0.75  # drop finished rows once fewer than this share of the decoded rows is still going
REFILL_AT = 0.25  # continuous batching: waiting prompts join once this share of the places is free
SHARED_PREFIX_MIN = 16  # tokens two prompts must share (a system message) for their start to be prefilled once
OnStep = Callable[[list[int], list[int]], Iterable[int] | None]  # (rows, tokens) -> rows to stop
# What the fast path reads from (or replaces on) a built GRPOTrainer / RLOOTrainer. Several are TRL's private
# members, which is why pyproject.toml pins TRL's minor version; ``check_trl_members`` names a missing one.
TRL_MEMBERS = ("_get_per_token_logps_and_entropies", "accelerator", "model", "processing_class",
               "max_completion_length", "temperature", "top_p", "top_k", "eos_token_ids")
TRL_LOGPS_PARAMETERS = ("model", "input_ids", "attention_mask", "logits_to_keep", "batch_size", "compute_entropy")


def check_setting(setting: str, name: str = "rollout") -> str:
    """``setting`` if it is one of SETTINGS, else ValueError (naming the new value of a renamed one)."""
    if setting in RENAMED_SETTINGS:
        raise ValueError(f"{name}={setting!r} was renamed to {RENAMED_SETTINGS[setting]!r} (one name for the stock "
                         f"path in RL and in generation); use {name}={RENAMED_SETTINGS[setting]}")
    if setting not in SETTINGS:
        raise ValueError(f"{name}={setting!r}: expected one of {', '.join(SETTINGS)}")
    return setting


def use_fast_path(setting: str, device) -> bool:
    """Whether to use this module's path: "fast" / "stock" force it on / off, "auto" means "on CPU"."""
    check_setting(setting)
    if setting != "auto":
        return setting == "fast"
    return torch.device(device).type == "cpu"


def generation_dtype(model) -> torch.dtype:
    """bfloat16 where the CPU has native bf16 matmuls (AVX512-BF16 / AMX), else the model's dtype."""
    dtype = next(model.parameters()).dtype
    if dtype == torch.float32 and native_bf16("cpu"):
        return torch.bfloat16
    return dtype


def default_eos_ids(model, tokenizer) -> list[int]:
    """End-of-sequence ids from the generation config (may be several) and the tokenizer."""
    ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = [] if ids is None else [ids] if isinstance(ids, int) else list(ids)
    if tokenizer is not None and tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return sorted(set(ids))


# -- sampling -----------------------------------------------------------------------------------
@torch.no_grad()
def generate_batch(model, tokenizer, prompt_ids: Sequence[Sequence[int]], *, max_new_tokens: int,
                   temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0,
                   eos_token_ids: Sequence[int] | None = None, generator: torch.Generator | None = None,
                   dtype: torch.dtype | None = None, on_step: OnStep | None = None, decoder=None
                   ) -> tuple[list[list[int]], list[list[float]]]:
    """Sample one completion per prompt; return (completion_ids, logprobs), one list per prompt.

    A completion stops after its first end-of-sequence token, which it includes (as TRL's own
    generation path returns it), or after ``max_new_tokens``. ``logprobs[i][j]`` is the log-probability
    of token j under ``softmax(logits / temperature)``, unfiltered (what TRL's update recomputes).
    Identical prompts are prefilled once. ``dtype`` is the decoding dtype (default: bfloat16 where the
    CPU runs it natively); ``generator`` seeds the draws (on the model's device, where decoding runs;
    tested on CPU). The model is put in eval mode for the call.
    ``on_step(rows, tokens)``, when given, sees after each step the rows that took a token and those
    tokens (a server streams them from there); it may return rows to stop now (a per-row token cap, a
    client gone), which end as they are. ``decoder``: one ``make_decoder`` built earlier for the same,
    unchanged weights (a server's), which skips casting and packing them again (~0.2 s on SmolLM2).
    """
    eos = _checked_request(model, tokenizer, prompt_ids, max_new_tokens, temperature, top_p, top_k, eos_token_ids)
    distinct: dict[tuple[int, ...], int] = {}
    rows = torch.tensor([distinct.setdefault(tuple(ids), len(distinct)) for ids in prompt_ids])
    device = next(model.parameters()).device
    ids, mask = (t.to(device) for t in _left_pad(list(distinct), pad_id=0))
    rows, eos = rows.to(device), eos.to(device)
    capacity = ids.size(1) + max_new_tokens
    was_training = model.training
    model.eval()
    try:
        decoder = decoder or make_decoder(model, capacity, dtype)
        logits = decoder.prefill(ids, mask, rows, capacity)
        return _decode(decoder, logits, len(prompt_ids), max_new_tokens, eos,
                       dict(temperature=temperature, top_p=top_p, top_k=top_k, generator=generator), on_step)
    finally:
        model.train(was_training)


def make_decoder(model, capacity: int, dtype: torch.dtype | None = None):
    """The fast decoder for ``model`` (``StaticDecoder``, else ``HFDecoder``), for up to ``capacity`` tokens."""
    reason = static_support(model, capacity)
    if reason is None:
        return StaticDecoder(model, dtype or generation_dtype(model))
    log.debug("fast decoder not used (%s): decoding with the model's own forward", reason)
    return HFDecoder(model)


def _decode(decoder, logits, num_rows: int, max_new_tokens: int, eos: torch.Tensor, sampling: dict,
            on_step: OnStep | None = None, admit: Callable[[int], tuple[list[int], torch.Tensor]] | None = None,
            width: int = 0, on_done: Callable[[int], None] | None = None, first: list[int] | None = None):
    """Sample until every row ends; the decoder holds output rows ``first`` (default 0, 1, ...) at first, whose
    next-token logits are ``logits``.

    ``admit(free)``, when given, adds up to ``free`` waiting prompts' rows to the decoder once that many
    of ``width`` places are free and returns (their output rows, their logits); it returns ([], None)
    when none wait. ``on_done(n)`` hears how many rows have ended, each time some end."""
    completions: list[list[int]] = [[] for _ in range(num_rows)]
    logprobs: list[list[float]] = [[] for _ in range(num_rows)]
    decoded = list(range(logits.size(0)) if first is None else first)  # output row of each row the decoder holds
    going = set(decoded)
    waiting = admit is not None
    while True:
        tokens, token_logprobs = sample_next(logits, **sampling)
        ended = torch.isin(tokens, eos).tolist()
        stepped = ([], [])  # (rows, tokens) that took a token this step
        for row, token, logprob, end in zip(decoded, tokens.tolist(), token_logprobs.tolist(), ended):
            if row in going:
                completions[row].append(token)
                logprobs[row].append(logprob)
                stepped[0].append(row)
                stepped[1].append(token)
                if end or len(completions[row]) == max_new_tokens:
                    going.discard(row)
        if on_step is not None:
            going.difference_update(on_step(*stepped) or ())
        if on_done is not None and len(going) < len(stepped[0]):
            on_done(sum(map(bool, completions)) - len(going))
        free = width - len(going)
        joining = waiting and (free >= max(1, int(REFILL_AT * width)) or not going)
        if not going and not joining:
            break
        if joining or len(going) < COMPACT_BELOW * len(decoded):  # finished rows would keep costing compute
            keep = [i for i, row in enumerate(decoded) if row in going]
            decoder.keep(torch.tensor(keep, dtype=torch.long, device=tokens.device))
            decoded = [decoded[i] for i in keep]
            tokens = tokens[keep]
        logits = decoder.step(tokens) if decoded else None
        if joining:
            rows, new_logits = admit(free)
            waiting = bool(rows)
            if rows:
                decoded += rows
                going.update(rows)
                logits = new_logits if logits is None else torch.cat([logits, new_logits])
            elif not decoded:
                break
    return completions, logprobs


@torch.no_grad()
def generate_stream(model, tokenizer, prompt_ids: Sequence[Sequence[int]], *, width: int, max_new_tokens: int,
                    temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0,
                    eos_token_ids: Sequence[int] | None = None, generator: torch.Generator | None = None,
                    dtype: torch.dtype | None = None, on_done: Callable[[int], None] | None = None,
                    continuous: bool = True) -> tuple[list[list[int]], list[list[float]]]:
    """``generate_batch`` over any number of prompts, at most ``width`` rows decoding at once.

    Prompts are taken shortest first, so that each prefill pads little; completions come back in the
    prompts' order. As rows end, the next prompts join the batch (continuous batching): late steps no
    longer run nearly empty while the longest completions of a batch finish, which a CPU pays for (a
    decode step's fixed cost is that of ~30 rows on SmolLM2). The start that prompts share (a system message)
    is prefilled once for the whole stream (``shared_prefixes`` over every prompt, ``_PrefixStore``). The same
    sampling semantics as ``generate_batch``. ``continuous=False``, and decoders that cannot take rows mid-way
    (``HFDecoder``), run ``generate_batch`` on batches of ``width`` prompts instead, each until its longest
    completion ends.
    ``on_done(n)`` is told the number of completions finished so far (a progress bar).
    """
    if width < 1:
        raise ValueError(f"width={width}: expected >= 1")
    eos = _checked_request(model, tokenizer, prompt_ids, max_new_tokens, temperature, top_p, top_k, eos_token_ids)
    eos = eos.to(next(model.parameters()).device)
    sampling = dict(temperature=temperature, top_p=top_p, top_k=top_k, generator=generator)
    order = sorted(range(len(prompt_ids)), key=lambda i: len(prompt_ids[i]))
    taken = _generate_sorted(model, tokenizer, [prompt_ids[i] for i in order], width, max_new_tokens, eos, sampling,
                             dtype, on_done, continuous)
    completions, logprobs = [[]] * len(order), [[]] * len(order)
    for place, i in enumerate(order):  # back to the prompts' order
        completions[i], logprobs[i] = taken[0][place], taken[1][place]
    return completions, logprobs


def _checked_request(model, tokenizer, prompt_ids, max_new_tokens, temperature, top_p, top_k, eos_token_ids
                     ) -> torch.Tensor:
    """Raise a ValueError naming a bad setting; return the end-of-sequence ids (on CPU)."""
    check_sampling(temperature, top_p, top_k)
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens}: expected >= 1")
    if not prompt_ids or any(len(ids) == 0 for ids in prompt_ids):
        raise ValueError("prompt_ids: expected a non-empty list of non-empty token id lists")
    return torch.tensor(list(eos_token_ids) if eos_token_ids is not None else default_eos_ids(model, tokenizer))


def _generate_sorted(model, tokenizer, prompt_ids, width, max_new_tokens, eos, sampling, dtype, on_done, continuous):
    """``generate_stream`` on prompts already in the order they are to be taken."""
    device = eos.device
    longest = max(len(ids) for ids in prompt_ids)
    was_training = model.training
    model.eval()
    try:
        decoder = make_decoder(model, longest + max_new_tokens, dtype)
        if not (continuous and hasattr(decoder, "admit")):
            completions: list[list[int]] = []
            logprobs: list[list[float]] = []
            for start in range(0, len(prompt_ids), width):
                done = generate_batch(model, tokenizer, prompt_ids[start:start + width], max_new_tokens=max_new_tokens,
                                      eos_token_ids=eos.tolist(), dtype=dtype, decoder=decoder, **sampling)
                completions += done[0]
                logprobs += done[1]
                if on_done is not None:
                    on_done(len(completions))
            return completions, logprobs
        following = 0  # the next prompt to join
        distinct: dict[tuple[int, ...], int] = {}
        which = [distinct.setdefault(tuple(ids), len(distinct)) for ids in prompt_ids]
        prefixes, of, suffixes = shared_prefixes(list(distinct))  # cut once, over every prompt
        store = _PrefixStore(decoder, prefixes, [of[d] for d in which] if prefixes else [], device)

        def admit(free: int) -> tuple[list[int], torch.Tensor | None]:
            nonlocal following
            chunk = list(range(following, min(following + free, len(prompt_ids))))
            if not chunk:
                return [], None
            following = chunk[-1] + 1
            joined, logits = [], []
            taken = sorted(dict.fromkeys(which[i] for i in chunk), key=lambda d: len(suffixes[d]))
            for group in _similar_lengths(taken, suffixes):
                place = {d: n for n, d in enumerate(group)}
                members = [(i, place[which[i]]) for i in chunk if which[i] in place]
                joined += [i for i, _ in members]
                ids, mask = (t.to(device) for t in _left_pad([suffixes[d] for d in group], pad_id=0))
                rows = torch.tensor([n for _, n in members], device=device)
                prefix = store.take([of[d] for d in group], [i for i, _ in members]) if prefixes else None
                logits.append(decoder.admit(ids, mask, rows, prefix=prefix))
            return joined, torch.cat(logits)

        first, logits = admit(width)
        return _decode(decoder, logits, len(prompt_ids), max_new_tokens, eos, sampling, admit=admit, width=width,
                       on_done=on_done, first=first)
    finally:
        model.train(was_training)


class _PrefixStore:
    """Each shared prompt start's keys and values, prefilled once for the whole stream and dropped after the last
    prompt that starts with it has joined."""

    def __init__(self, decoder, prefixes: list[tuple[int, ...]], prompt_prefix: list[int], device):
        self.decoder, self.prefixes, self.device = decoder, prefixes, device
        self.prompt_prefix = prompt_prefix  # the prefix of each prompt of the stream
        self.left = collections.Counter(prompt_prefix)  # prompts yet to join, per prefix
        self.keys: dict[int, torch.Tensor] = {}  # prefix -> (L, 2, g, q, e)

    def take(self, wanted: list[int], prompts: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``StaticDecoder.admit``'s ``prefix`` for distinct prompts whose prefixes are ``wanted`` (one per distinct
        prompt), joining as the stream's prompts ``prompts``: (keys (L, 2, r, g, q, e), mask (r, q), index (u,))."""
        used = list(dict.fromkeys(wanted))
        missing = [k for k in used if k not in self.keys and self.prefixes[k]]
        if missing:
            ids, mask = (t.to(self.device) for t in _left_pad([self.prefixes[k] for k in missing], pad_id=0))
            keys = self.decoder.prefix_keys(ids, mask)
            for n, k in enumerate(missing):
                self.keys[k] = keys[:, :, n, :, ids.size(1) - len(self.prefixes[k]):].clone()
        q = max(len(self.prefixes[k]) for k in used)
        _, mask = _left_pad([self.prefixes[k] for k in used], pad_id=0)
        shape = self.decoder.prefix_shape(len(used), q)
        keys = torch.zeros(shape, dtype=self.decoder.dtype, device=self.device)
        for n, k in enumerate(used):
            if self.prefixes[k]:
                keys[:, :, n, :, q - len(self.prefixes[k]):] = self.keys[k]
        for i in prompts:  # the last prompt with this start is here: its keys are no longer needed
            k = self.prompt_prefix[i]
            self.left[k] -= 1
            if not self.left[k]:
                self.keys.pop(k, None)
        place = {k: n for n, k in enumerate(used)}
        return keys, mask.to(self.device), torch.tensor([place[k] for k in wanted], device=self.device)


def _similar_lengths(order: list[int], sequences) -> list[list[int]]:
    """``order`` (indices of ``sequences``, shortest first) cut where one is over 1.25x the first of its group
    (+8 tokens): each group's prefill pads little (one long prompt would pad every other to its length)."""
    groups: list[list[int]] = []
    for i in order:
        if not groups or len(sequences[i]) > 1.25 * len(sequences[groups[-1][0]]) + 8:
            groups.append([])
        groups[-1].append(i)
    return groups


def shared_prefixes(prompts: list[tuple[int, ...]], least: int | None = None
                    ) -> tuple[list[tuple[int, ...]], list[int], list[tuple[int, ...]]]:
    """Split distinct prompts into (distinct prefixes, each prompt's prefix index, suffixes), the suffix never empty.

    Each prompt is cut where it saves the most prefill: at a start of c >= ``least`` tokens shared by k prompts
    (itself included), maximising c (1 - 1/k), the tokens saved if all k cut there (a system message shared by
    many prompts beats a longer start shared by two). ([], [], prompts) when no prompt shares ``least`` tokens
    (default ``SHARED_PREFIX_MIN``)."""
    least = SHARED_PREFIX_MIN if least is None else least

    def common(x, y):
        return next((i for i, (s, t) in enumerate(zip(x, y)) if s != t), min(len(x), len(y)))

    # in lexicographic order, the start two prompts share is the least of their neighbours' between them
    order = sorted(range(len(prompts)), key=lambda i: prompts[i])
    next_shared = [common(prompts[a], prompts[b]) for a, b in zip(order, order[1:])]
    cut = [0] * len(prompts)
    for r, i in enumerate(order):
        shared = []  # the start prompt i shares with each other prompt sharing at least `least`
        for steps in (range(r - 1, -1, -1), range(r, len(order) - 1)):
            running = len(prompts[i])
            for s in steps:
                running = min(running, next_shared[s])
                if running < least:
                    break
                shared.append(min(running, len(prompts[i]) - 1))
        shared.sort(reverse=True)  # shared[k - 2]: the longest start i shares with k - 1 others
        cut[i] = max(((c * (1 - 1 / k), c) for k, c in enumerate(shared, start=2) if c >= least), default=(0, 0))[1]
    if not any(cut):
        return [], [], list(prompts)
    index: dict[tuple[int, ...], int] = {}
    of = [index.setdefault(x[:c], len(index)) for x, c in zip(prompts, cut)]
    return list(index), of, [x[c:] for x, c in zip(prompts, cut)]


def _left_pad(sequences: list[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, p) ids and mask, padded on the left to the longest sequence (an empty one: all padding)."""
    longest = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), longest), pad_id, dtype=torch.long)
    mask = torch.zeros(len(sequences), longest, dtype=torch.long)
    for i, seq in enumerate(sequences):
        ids[i, longest - len(seq):] = torch.tensor(list(seq))
        mask[i, longest - len(seq):] = 1
    return ids, mask


# -- TRL rollout ------------------------------------------------------------------------------
RolloutFunc = Callable[[list, object], dict]


def make_rollout_func(*, max_new_tokens: int | None = None, temperature: float | None = None,
                      top_p: float | None = None, top_k: int | None = None, num_generations: int | None = None,
                      fast_logprobs: bool = True, args=None, model=None, tokenizer=None) -> RolloutFunc:
    """A ``rollout_func`` for ``GRPOTrainer``: samples with ``generate_batch`` from the trainer's weights.

    Settings left as None come from the trainer (``max_completion_length``, ``temperature``, ``top_p``,
    ``top_k``). TRL hands over each process's prompts already repeated once per generation (its sampler
    does that), so ``num_generations=None`` samples one completion per prompt it gets; an integer n
    samples n per prompt instead (for a caller that passes distinct prompts). Prompts are chat
    messages (rendered with the tokenizer's chat template, as TRL does) or plain strings.
    ``fast_logprobs``: on its first call, also switch the trainer to ``enable_fast_logprobs``.
    ``args`` / ``model`` / ``tokenizer`` are accepted for symmetry with the trainer's arguments; the
    rollout always reads the trainer's own model and tokenizer at call time (the weights change).
    """
    del args, model, tokenizer

    def rollout(prompts: list, trainer) -> dict:
        check_trl_members(trainer)
        if fast_logprobs and not getattr(trainer, "_moslim_fast_logprobs", False):
            enable_fast_logprobs(trainer)
        _check_trainer_sampling(trainer)
        tokenizer = trainer.processing_class
        repeat = num_generations or 1
        prompt_ids = [ids for ids in _tokenize(tokenizer, prompts, trainer) for _ in range(repeat)]
        policy = trainer.accelerator.unwrap_model(trainer.model)
        completion_ids, logprobs = generate_batch(
            policy, tokenizer, prompt_ids,
            max_new_tokens=max_new_tokens or trainer.max_completion_length,
            temperature=trainer.temperature if temperature is None else temperature,
            top_p=trainer.top_p if top_p is None else top_p,
            top_k=(trainer.top_k or 0) if top_k is None else top_k,
            eos_token_ids=trainer.eos_token_ids,
        )
        return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": logprobs}

    return rollout


def check_trl_members(trainer) -> None:
    """Raise a RuntimeError naming the TRL members the fast path needs and ``trainer`` lacks (a TRL upgrade)."""
    import inspect

    missing = [name for name in TRL_MEMBERS if not hasattr(trainer, name)]
    logps = getattr(trainer, "_get_per_token_logps_and_entropies", None)
    if logps is not None and not getattr(trainer, "_moslim_fast_logprobs", False):
        parameters = inspect.signature(logps).parameters
        missing += [f"_get_per_token_logps_and_entropies({name}=...)" for name in TRL_LOGPS_PARAMETERS
                    if name not in parameters]
    if missing:
        import trl

        raise RuntimeError(f"trl {trl.__version__}: {type(trainer).__name__} has no {', '.join(missing)}; moslim's "
                           f"fast CPU path was written against trl 1.16 (the version pyproject.toml pins). Install "
                           f"trl 1.16.x, or set train.rollout: stock to use TRL's own generation")


def _check_trainer_sampling(trainer) -> None:
    unsupported = {"min_p": (getattr(trainer, "min_p", None), None),
                   "repetition_penalty": (getattr(trainer, "repetition_penalty", 1.0), 1.0)}
    for name, (value, neutral) in unsupported.items():
        if value is not None and value != neutral:
            raise ValueError(f"{name}={value}: the fast rollout does not implement it; set rollout: stock")


def _tokenize(tokenizer, prompts: list, trainer) -> list[list[int]]:
    if prompts and isinstance(prompts[0], list):  # conversations: apply the chat template like TRL does
        rendered = tokenizer.apply_chat_template(
            conversation=prompts, tools=getattr(trainer, "tools", None) or None,
            chat_template=getattr(trainer, "chat_template", None), add_generation_prompt=True,
            tokenize=True, return_dict=True, **(getattr(trainer, "chat_template_kwargs", None) or {}))
        return [list(ids) for ids in rendered["input_ids"]]
    return [list(ids) for ids in tokenizer(text=prompts)["input_ids"]]


# -- log-probs for the update ---------------------------------------------------------------------
ENTROPY_ROWS = 32  # positions per chunk of the log-prob / entropy passes (32 x 49k floats: 6 MB, in cache)


# What one more bucket of the update's completion pass costs, in padded tokens: each bucket reads every weight
# again and adds into every weight's gradient. On 2 cores (benchmarks/update_padding.py: SmolLM2, 4 prompts x 4
# completions of 30-128 tokens, mean 83) every split tried took 0.79-0.88x one padded pass; 128 gives 2-3 buckets.
BUCKET_OVERHEAD = 128


def completion_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int,
                        temperature: float = 1.0, entropy: bool = False, entropy_grad: bool = False):
    """Per-token log-probs (b, n) of the last ``n = logits_to_keep`` tokens of ``input_ids`` (b, s),
    under ``softmax(logits / temperature)``; and their entropies (b, n) if asked (differentiable only
    with ``entropy_grad``). Padding -> 0.

    For Llama, Mistral and Qwen2 the hidden states come from ``completion_states``: only the positions that
    predict a completion token (no padding: each row runs as far as its own completion, prompts shared
    by a group run once), and the head projects only those, in the autocast dtype. Log-probs and
    entropies come from ``TokenLogprobs`` (one pass over the (t, v) logits each way, in chunks that stay
    in cache); an entropy that needs a gradient takes the plain autograd path. The numbers equal a plain
    forward's, gradients included.
    """
    n, b = logits_to_keep, input_ids.size(0)
    found = completion_states(model, input_ids, attention_mask, n)
    if found is None:  # other models: their own forward over all n positions of every row
        logits = model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=n + 1,
                       use_cache=False).logits  # (b, n + 1, v): position i predicts token i + 1
        # the last position predicts past the end: ignore it, so the logits are used whole (no copy)
        targets = torch.cat([input_ids[:, -n:], input_ids.new_full((b, 1), -100)], dim=1)
        logps, entropies = _token_logprobs(logits.flatten(0, 1), targets.flatten(), temperature, entropy, entropy_grad)
        pad = attention_mask[:, -n:] == 0
        logps = logps.view(b, n + 1)[:, :n].masked_fill(pad, 0.0)
        return logps, entropies.view(b, n + 1)[:, :n].masked_fill(pad, 0.0) if entropy else None
    hidden, where = found  # (t, d), (t,) flat indices into (b, n)
    logits = model.get_output_embeddings()(hidden)  # (t, v)
    targets = input_ids[:, -n:].reshape(-1)[where]
    logps, entropies = _token_logprobs(logits, targets, temperature, entropy, entropy_grad)
    return _scattered(logps, where, b, n), _scattered(entropies, where, b, n) if entropy else None


def _token_logprobs(logits: torch.Tensor, targets: torch.Tensor, temperature: float, entropy: bool,
                    entropy_grad: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``TokenLogprobs`` over (r, v) logits; an entropy that needs a gradient (an entropy bonus, rare) the plain
    autograd way."""
    if not (entropy and entropy_grad and torch.is_grad_enabled()):
        return TokenLogprobs.apply(logits, targets, temperature, entropy)
    scaled = logits.float() / temperature
    logps = -torch.nn.functional.cross_entropy(scaled, targets, reduction="none")  # ignore_index -100: 0
    log_p = scaled.log_softmax(-1)
    return logps, -(log_p.exp() * log_p).sum(-1)


def _scattered(values: torch.Tensor, where: torch.Tensor, b: int, n: int) -> torch.Tensor:
    """(t,) values at the flat positions ``where`` of a (b, n) tensor of zeros (differentiably)."""
    return values.new_zeros(b * n).scatter(0, where, values).view(b, n)


def length_buckets(lengths: Sequence[int], overhead: int | None = None) -> list[list[int]]:
    """Rows grouped by length, longest first, for passes that pad each group to its longest row: the split
    of the sorted rows that minimises padded tokens + ``overhead`` (default ``BUCKET_OVERHEAD``) per group
    (exact, O(b^2)). Rows of length 0 are left out."""
    overhead = BUCKET_OVERHEAD if overhead is None else overhead
    order = sorted((i for i, k in enumerate(lengths) if k > 0), key=lambda i: -lengths[i])
    best = [0.0] + [float("inf")] * len(order)  # best[j]: cost of the first j rows of ``order``
    cut = [0] * (len(order) + 1)
    for j in range(1, len(order) + 1):
        for i in range(j):  # the last group: order[i:j], padded to lengths[order[i]]
            cost = best[i] + (j - i) * lengths[order[i]] + overhead
            if cost < best[j]:
                best[j], cut[j] = cost, i
    groups, j = [], len(order)
    while j:
        groups.append(order[cut[j]: j])
        j = cut[j]
    return groups[::-1]


def completion_states(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, n: int
                      ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The final hidden states (t, d) that predict the completion tokens among the last ``n`` of
    ``input_ids`` (b, s) (those whose mask is 1), as a plain forward computes them, and their flat
    positions (t,) in (b, n); None for a model this does not handle (it then takes its own forward).

    No padding is computed: rows run in ``length_buckets``, each as far as its group's longest completion
    (causal attention: what a position sees does not depend on later ones). Rows that share their prompt
    (the first s - n tokens and their mask: a GRPO group) share its forward: each distinct prompt runs
    once, its keys and values are copied to its rows (a differentiable index, so gradients flow back into
    the one prompt pass), and the completions run on that cache. With 8 prompts x 4 completions this
    skips 3/4 of the prompt tokens' forward and backward. Positions and masks are those of the plain
    forward (positions count padding, as there).
    """
    p = input_ids.size(1) - n
    if n < 1 or p < 1 or static_support(model, input_ids.size(1)) is not None:  # DDP, PEFT, other models: their forward
        return None
    backbone = model.model
    valid = attention_mask[:, p:] == 1  # (b, n)
    positions = torch.arange(1, n + 1, device=input_ids.device)
    lengths = (valid * positions).amax(dim=1).tolist()  # each row's last completion token, counted from 1
    if not any(lengths):  # no completion token at all: the plain forward keeps the loss's graph
        return None
    groups: dict[tuple, int] = {}
    prompts = torch.cat([input_ids[:, :p] * attention_mask[:, :p], attention_mask[:, :p]], dim=1).tolist()
    rows = [groups.setdefault(tuple(row), len(groups)) for row in prompts]
    shared = len(groups) < len(rows) and not getattr(model, "is_gradient_checkpointing", False)
    if shared:
        from transformers import DynamicCache

        cache_arg = cache_argument(backbone)  # read once: an inspect.signature call
        first = [rows.index(group) for group in range(len(groups))]
        cache = DynamicCache(config=model.config)
        prompt = backbone(input_ids=input_ids[first, :p], attention_mask=attention_mask[first, :p], use_cache=True,
                          **{cache_arg: cache}).last_hidden_state[:, -1:]  # (u, 1, d)
    states, where = [], []
    for bucket in length_buckets(lengths):
        m = lengths[bucket[0]]  # the bucket's longest completion: positions p - 1 .. p + m - 2 predict it
        index = torch.tensor(bucket, device=input_ids.device)
        ids, mask = input_ids[index, :p + m - 1], attention_mask[index, :p + m - 1]  # (r, p + m - 1)
        if shared:
            group = torch.tensor([rows[i] for i in bucket], device=input_ids.device)
            hidden = prompt.index_select(0, group)  # (r, 1, d)
            if m > 1:
                rest = backbone(input_ids=ids[:, p:], attention_mask=mask, use_cache=True,
                                **{cache_arg: select_rows(cache, group)}).last_hidden_state
                hidden = torch.cat([hidden, rest], dim=1)  # (r, m, d)
        else:
            hidden = backbone(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state[:, p - 1:]
        kept = valid[index, :m]  # (r, m)
        states.append(hidden[kept])
        where.append((index[:, None] * n + positions[None, :m] - 1)[kept])
    return torch.cat(states), torch.cat(where)


def select_rows(cache, index: torch.Tensor):
    """A new ``DynamicCache`` with rows ``index`` of ``cache``, by ``index_select``, whose backward (``index_add_``)
    sums the rows that share a prompt in a fixed order. The cache's own advanced indexing has
    ``index_put_(accumulate=True)`` as its backward, which on CPU adds float rows with atomics from several threads
    once a layer's keys pass 32k values: the order of those additions, and so the last bits of the prompt's
    gradients, changed from run to run (two idle runs of the same RL command parted after their first update,
    docs/fast.md)."""
    selected = copy.copy(cache)
    selected.layers = [copy.copy(layer) for layer in cache.layers]  # the same kind of layer, its own tensors
    for layer in selected.layers:
        if layer.keys is not None and layer.keys.numel():
            layer.keys = layer.keys.index_select(0, index)
            layer.values = layer.values.index_select(0, index)
    return selected


class TokenLogprobs(torch.autograd.Function):
    """``log softmax(logits / temperature)[target]`` per row of ``logits`` (r, v), and, without gradient,
    the entropy of each row's distribution; rows whose target is negative (ignored) get 0.

    The same numbers as ``cross_entropy(logits.float() / temperature)``, in chunks of ``ENTROPY_ROWS``
    rows that stay in the CPU's cache: no float32 copy of the (r, v) logits, one pass each way, and the
    backward writes the logits' gradient (in their dtype, what autograd would cast it to) chunk by chunk.
    On CPU, ``log_softmax`` and its backward over 4k x 49k logits took ~1.7 s of a ~10 s update.
    """

    @staticmethod
    def forward(ctx, logits, targets, temperature: float, entropy: bool):
        r = logits.size(0)
        logps = torch.empty(r, dtype=torch.float32, device=logits.device)
        log_z = torch.empty_like(logps)
        entropies = torch.empty_like(logps) if entropy else None
        valid = targets >= 0
        picked = targets.clamp(min=0)[:, None]
        for i in range(0, r, ENTROPY_ROWS):
            z = _scaled(logits[i: i + ENTROPY_ROWS], temperature)
            top = z.amax(dim=-1, keepdim=True)
            e = (z - top).exp_()
            total = e.sum(dim=-1, keepdim=True)
            lz = (top + total.log())[:, 0]
            log_z[i: i + ENTROPY_ROWS] = lz
            logps[i: i + ENTROPY_ROWS] = z.gather(1, picked[i: i + ENTROPY_ROWS])[:, 0] - lz
            if entropy:  # H = log Z - E_p[z]
                entropies[i: i + ENTROPY_ROWS] = lz - (e * z).sum(dim=-1) / total[:, 0]
        logps = logps.masked_fill(~valid, 0.0)
        ctx.save_for_backward(logits, picked, valid, log_z)
        ctx.temperature = temperature
        if entropy:
            ctx.mark_non_differentiable(entropies)
        return logps, entropies

    @staticmethod
    def backward(ctx, grad_logps, _grad_entropies):
        logits, picked, valid, log_z = ctx.saved_tensors
        temperature = ctx.temperature
        # d logp / d logits = (onehot(target) - softmax) / temperature
        scale = (grad_logps.float() * valid) / temperature
        grad = torch.empty_like(logits)
        for i in range(0, logits.size(0), ENTROPY_ROWS):
            rows = slice(i, i + ENTROPY_ROWS)
            g = (_scaled(logits[rows], temperature) - log_z[rows, None]).exp_().mul_(-scale[rows, None])
            g.scatter_add_(1, picked[rows], scale[rows, None])
            grad[rows] = g
        return grad, None, None, None


def _scaled(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    z = logits.float()
    if temperature != 1.0:
        z = z / temperature if z is logits else z.div_(temperature)
    return z


def prefer_eager_attention(model) -> None:
    """On CPU, switch a model from SDPA to eager attention: same maths, and SDPA's CPU flash kernel
    made forward + backward of SmolLM2 (32 x 165 tokens, bf16 autocast) take ~2x as long (measured)."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "_attn_implementation", None) != "sdpa":
        return
    if next(model.parameters()).device.type != "cpu" or not hasattr(model, "set_attn_implementation"):
        return
    model.set_attn_implementation("eager")
    log.info("update: eager attention on CPU for %s", type(model).__name__)


def _fast_logps(trainer, model, input_ids, attention_mask, logits_to_keep, batch_size, compute_entropy):
    batch_size = batch_size or input_ids.size(0)  # TRL's chunking bounds the (b, n, v) logits' memory
    logps, entropies = [], []
    for start in range(0, input_ids.size(0), batch_size):
        chunk = slice(start, start + batch_size)
        with trainer.accelerator.autocast():
            lp, ent = completion_logprobs(model, input_ids[chunk], attention_mask[chunk], logits_to_keep,
                                          temperature=trainer.temperature, entropy=compute_entropy,
                                          entropy_grad=getattr(trainer, "_entropy_bonus_enabled", False))
        logps.append(lp)
        entropies.append(ent)
    return torch.cat(logps), torch.cat(entropies) if compute_entropy else None, None


def enable_fast_logprobs(trainer) -> None:
    """Switch a built ``GRPOTrainer`` (or ``RLOOTrainer``) to ``completion_logprobs`` for text-only
    models without MoE auxiliary losses (anything else keeps TRL's own path), with eager attention
    on CPU."""
    check_trl_members(trainer)
    original = trainer._get_per_token_logps_and_entropies

    def patched(self, model, input_ids, attention_mask, logits_to_keep, batch_size=None,
                compute_entropy=False, compute_aux_loss=False, **multimodal):
        if compute_aux_loss or any(value is not None for value in multimodal.values()):
            return original(model, input_ids, attention_mask, logits_to_keep, batch_size=batch_size,
                            compute_entropy=compute_entropy, compute_aux_loss=compute_aux_loss, **multimodal)
        return _fast_logps(self, model, input_ids, attention_mask, logits_to_keep, batch_size, compute_entropy)

    trainer._get_per_token_logps_and_entropies = types.MethodType(patched, trainer)
    trainer._moslim_fast_logprobs = True
    for model in (trainer.model, getattr(trainer, "ref_model", None)):
        if model is not None:
            prefer_eager_attention(trainer.accelerator.unwrap_model(model))
    log.info("update log-probs: moslim plain forward (completion positions only)")
