"""Next-token sampling with ``model.generate(do_sample=True)``'s semantics, without a multinomial.

Same order of processing as Hugging Face: divide by the temperature, keep the top-k, keep the
nucleus (top-p, renormalised over what top-k kept). The draw is Gumbel-max (argmax of score minus
the log of an Exp(1) draw), which samples exactly from the softmax of the kept scores and only
touches the kept candidates when top-k / top-p filter. For top-p alone, the nucleus is looked for
in the 1024 most likely tokens first (exact whenever they hold at least top-p of the mass, the
usual case) instead of sorting all 49k logits.

# b = rows (sequences), v = vocabulary, c = candidate tokens kept by top-k / top-p
"""

from __future__ import annotations

import torch

TOP_P_CANDIDATES = 1024  # tokens searched for the nucleus before falling back to a full sort


def check_sampling(temperature: float, top_p: float, top_k: int) -> None:
    """Raise a ValueError naming the bad value (the ranges ``GenerationConfig`` accepts)."""
    if temperature < 0:
        raise ValueError(f"temperature={temperature}: expected >= 0 (0 means greedy)")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p={top_p}: expected 0 < top_p <= 1 (1 keeps every token)")
    if top_k is not None and top_k < 0:
        raise ValueError(f"top_k={top_k}: expected >= 0 (0 keeps every token)")


def sample_next(logits: torch.Tensor, *, temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw one token per row; return ``tokens`` (b,) and their ``logprobs`` (b,).

    ``logits`` (b, v) are the model's raw logits. The log-probability is that of the token under
    ``softmax(logits / temperature)`` over the whole vocabulary, unfiltered: the quantity TRL's
    trainer computes for the same token (its log-probs are temperature-scaled, never filtered).
    ``temperature=0`` is greedy decoding.
    """
    scaled = logits.float()
    if temperature > 0:
        scaled = scaled / temperature
    log_z = torch.logsumexp(scaled, dim=-1)  # (b,)
    if temperature == 0:
        tokens = scaled.argmax(dim=-1)
    else:
        scores, ids = _candidates(scaled, log_z, top_k or 0, top_p)
        if ids is None:
            tokens = _gumbel_argmax(scaled, generator)
        else:
            tokens = ids.gather(1, _gumbel_argmax(scores, generator)[:, None])[:, 0]
    logprobs = scaled.gather(1, tokens[:, None])[:, 0] - log_z
    return tokens, logprobs


def _gumbel_argmax(scores: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Index of argmax(scores + Gumbel noise) per row: a draw from softmax(scores). (b, n) -> (b,)"""
    noise = torch.empty_like(scores).exponential_(generator=generator)  # E ~ Exp(1); -log E ~ Gumbel
    return (scores - noise.log_()).argmax(dim=-1)


def _candidates(scaled: torch.Tensor, log_z: torch.Tensor, top_k: int, top_p: float):
    """The scores (b, c) and token ids (b, c) that survive top-k then top-p, or (None, None) if all do.

    Dropped candidates get a score of -inf. Candidates are sorted from most to least likely.
    """
    vocab = scaled.size(-1)
    if 0 < top_k < vocab:
        scores, ids = scaled.topk(top_k, dim=-1)
        log_norm = torch.logsumexp(scores, dim=-1)  # top-p after top-k renormalises over the kept tokens
    elif top_p < 1:
        scores, ids = scaled.topk(min(vocab, TOP_P_CANDIDATES), dim=-1)
        log_norm = log_z
        held = (torch.logsumexp(scores, dim=-1) - log_z).exp()  # mass of the candidates, (b,)
        if bool((held < top_p).any()):  # the nucleus may reach beyond them: sort everything
            scores, ids = scaled.sort(dim=-1, descending=True)
    else:
        return None, None
    if top_p < 1:
        probs = (scores - log_norm[:, None]).exp()
        before = probs.cumsum(dim=-1) - probs  # mass of the strictly more likely candidates
        # Hugging Face drops a token when the mass at or below it is <= 1 - top_p, i.e. before >= top_p;
        # the most likely token always stays.
        drop = before >= top_p
        drop[:, 0] = False
        scores = scores.masked_fill(drop, float("-inf"))
    return scores, ids
