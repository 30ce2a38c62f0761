"""Next-token sampling with ``model.generate(do_sample=True)``'s semantics, without a multinomial.

Same order of processing as Hugging Face: divide by the temperature, keep the top-k, keep the
nucleus (top-p, renormalised over what top-k kept). The draw is by inverse CDF: one uniform number
per row, located in the running sum of the kept probabilities (an exact draw from their softmax).
On CPU that costs an exp and a cumsum over the scores, ~7 ms for 32 rows x 49k tokens, where
``torch.multinomial`` or Gumbel noise (one exponential draw per token) take ~50 ms. With top-k /
top-p only the kept candidates are touched. The nucleus is looked for in each row's 64 most likely
tokens first, then 512, then 4096 (exact as soon as they hold top-p of the mass), and only then in a
full sort (~5 ms a row on 49k tokens); a row goes on to the next window only if its nucleus is not in
this one. (In the demo evaluation's sampling, 3% of the rows need more than 64 tokens, and two thirds
of the steps have such a row: searching the wider window for every row of those steps cost 2-3x the
rest of the sampling.)

# b = rows (sequences), v = vocabulary, c = candidate tokens kept by top-k / top-p
"""

from __future__ import annotations

import torch

TOP_P_CANDIDATES = (64, 512, 4096)  # windows searched for the nucleus before a full sort


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
    scaled = _scale(logits, temperature)
    if temperature == 0:
        tokens = scaled.argmax(dim=-1)
        log_z = _logsumexp(scaled)[:, 0]
        chosen = scaled.gather(1, tokens[:, None])
    else:
        scores, ids, log_z = _candidates(scaled, top_k or 0, top_p)
        if ids is None:
            tokens, log_z = _inverse_cdf(scaled, generator, overwrite=True)  # scaled now holds a running sum
            chosen = _scale(logits.gather(1, tokens[:, None]), temperature)  # the values scaled held there
        else:
            tokens = ids.gather(1, _inverse_cdf(scores, generator)[0][:, None])[:, 0]
            if log_z is None:
                log_z = _logsumexp(scaled)[:, 0]
            chosen = scaled.gather(1, tokens[:, None])
    return tokens, chosen[:, 0] - log_z


def _scale(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """A float32 copy of ``logits`` divided by ``temperature`` (> 0). In place, on one new tensor: on this CPU,
    ``logits.float() / temperature`` took ~15x as long at 48 x 49k (4 vs 0.3 ms), and every fresh full-vocabulary
    tensor costs ~1.5 ms of page faults (measured)."""
    scaled = logits.to(torch.float32, copy=True)
    return scaled.div_(temperature) if temperature > 0 else scaled


def _logsumexp(scaled: torch.Tensor, rows: int = 8) -> torch.Tensor:
    """``torch.logsumexp(scaled, dim=-1, keepdim=True)`` (the same numbers), ``rows`` rows at a time: its two
    temporaries per chunk are small enough for the allocator to reuse, where the whole batch's (2 x 9 MB at 48 x 49k)
    came fresh from the OS on every step (~3.9k page faults, ~1-3 ms of a ~5 ms sampling step; measured)."""
    return torch.cat([torch.logsumexp(scaled[i:i + rows], dim=-1, keepdim=True) for i in range(0, len(scaled), rows)])


def _inverse_cdf(scores: torch.Tensor, generator: torch.Generator | None, overwrite: bool = False
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """A draw from softmax(scores) per row, and logsumexp(scores). (b, n) -> (b,), (b,)
    ``overwrite``: ``scores`` may be overwritten (no new (b, n) tensor)."""
    top = scores.amax(dim=-1, keepdim=True)
    cdf = (scores.sub_(top) if overwrite else scores - top).exp_().cumsum_(dim=-1)  # unnormalised; -inf adds nothing
    total = cdf[:, -1:]
    u = torch.rand(scores.size(0), 1, generator=generator, device=scores.device) * total
    # the first index whose running sum exceeds u: token i wins with probability exp(score_i) / total
    picked = torch.searchsorted(cdf, u, right=True).clamp_(max=scores.size(-1) - 1)[:, 0]
    return picked, top[:, 0] + total[:, 0].log()


def _candidates(scaled: torch.Tensor, top_k: int, top_p: float):
    """The scores (b, c) and token ids (b, c) that survive top-k then top-p, or (None, None) if all do, and
    logsumexp(scaled) (b,) where it was needed (top-p alone), else None.

    Dropped candidates get a score of -inf. Candidates are sorted from most to least likely.
    """
    vocab = scaled.size(-1)
    log_z = None
    if 0 < top_k < vocab:
        scores, ids = scaled.topk(top_k, dim=-1)
        log_norm = torch.logsumexp(scores, dim=-1, keepdim=True)  # top-p after top-k renormalises (HF order)
    elif top_p < 1:
        log_norm = _logsumexp(scaled)
        log_z = log_norm[:, 0]
        scores, ids = _nucleus_windows(scaled, log_norm, top_p)
    else:
        return None, None, None
    if top_p < 1:
        probs = (scores - log_norm).exp()
        before = probs.cumsum(dim=-1) - probs  # mass of the strictly more likely candidates
        # Hugging Face drops a token when the mass at or below it is <= 1 - top_p, i.e. before >= top_p;
        # the most likely token always stays.
        drop = before >= top_p
        drop[:, 0] = False
        scores = scores.masked_fill(drop, float("-inf"))
    return scores, ids, log_z


def _nucleus_windows(scaled: torch.Tensor, log_norm: torch.Tensor, top_p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's most likely tokens (b, c), sorted, that hold its top-p nucleus, and their ids (b, c).

    A row takes the first of ``TOP_P_CANDIDATES`` whose tokens hold ``top_p`` of its mass (``log_norm``:
    logsumexp of each row), else its full sort; only the rows not yet settled search the next window. Rows
    settled in a narrower window than the widest used are padded with -inf scores (nothing to draw)."""
    b, vocab = scaled.shape
    pending = None  # rows still looking for their nucleus (None: all)
    found = []  # (rows or None, scores, ids) per window used
    for window in (*TOP_P_CANDIDATES, vocab):
        rows = scaled if pending is None else scaled[pending]
        if window >= vocab:
            scores, ids = rows.sort(dim=-1, descending=True)
            found.append((pending, scores, ids))
            break
        scores, ids = rows.topk(window, dim=-1)
        norm = log_norm if pending is None else log_norm[pending]
        fits = (torch.logsumexp(scores, dim=-1, keepdim=True) - norm).exp()[:, 0] >= top_p  # their share of the mass
        if bool(fits.all()):
            found.append((pending, scores, ids))
            break
        settled = fits.nonzero()[:, 0]
        at = settled if pending is None else pending[settled]
        found.append((at, scores[settled], ids[settled]))
        pending = (~fits).nonzero()[:, 0] if pending is None else pending[~fits]
    if len(found) == 1:
        return found[0][1], found[0][2]
    width = found[-1][1].size(-1)
    scores = scaled.new_full((b, width), float("-inf"))
    ids = torch.zeros(b, width, dtype=torch.long, device=scaled.device)
    for rows, window_scores, window_ids in found:
        scores[rows, :window_scores.size(-1)] = window_scores
        ids[rows, :window_ids.size(-1)] = window_ids
    return scores, ids
