"""The backbone's last layer run at the pooled positions only, the layers below it at the real tokens only.

# b = batch, t = tokens, s = positions read per row, d = hidden, h = query heads, g = key/value heads, e = head dim

A reward model that pools the *last* token (and, for a factored head, the question's last token) reads
the top layer's output at one or two positions per row, yet a plain forward computes that layer at all t.
A decoder layer's output at position p needs its queries, attention output, o-projection and MLP at p
only; the keys and values it attends over are the only part that needs every token. :func:`last_layer_at`
swaps the last layer for :class:`_AtPositions`, which computes exactly that, with the layer's own modules
(the same weights and gradients), and keeps the ``(b, s, d)`` result; the backbone's final norm is then
applied to those rows alone. The numbers are a plain forward's, rounded differently (SDPA over s queries
instead of t). For the demo's 8-layer model this is ~1/8 of a forward, and about half of a training step
on the cached lower layers, where only the top two layers run.

The layers below run their projections, norms and MLP on the real tokens of a padded batch only
(:class:`_Packed`): a batch of rows 60-128 tokens long padded to 128 wastes about a sixth of every matmul
on padding otherwise. Only attention needs the (b, t) layout, so the packed queries, keys and values are
scattered into it for SDPA and gathered back. Padded positions leave such a layer unchanged (a plain
forward computes values there that nothing reads: every later layer's attention masks them out), except the
few that round the packed row count up to a multiple of ``PACK_ROWS``: those are computed as a plain forward
computes them. The rounding bounds how many matmul shapes a run meets. Under bf16 on a CPU, oneDNN builds a
kernel per shape and keeps up to 1,024 of them, about 1 MiB each: with a batch's exact token count, almost every
batch is a new shape, and the demo's reward-model stage grew by ~3.7 GiB over its first 300 steps
(docs/reward.md, "Memory under bf16").

Supported: Llama-family backbones (``SUPPORTED``) without query/key norms, attention dropout, or a
sliding window shorter than the batch; :func:`support` says why not otherwise and the caller runs the
plain forward.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from moslim.policy.fast_decode import rotate

SUPPORTED = ("LlamaModel", "MistralModel", "Qwen2Model")
PACK_ROWS = 128  # the packed layers' row count, rounded up to a multiple of this (1: the real tokens exactly)
# one swapped forward at a time: a second thread's swap would wrap the first one's wrapper and could leave it installed
_SWAP = threading.RLock()


def support(backbone: nn.Module, tokens: int) -> str | None:
    """None when :func:`last_layer_at` reproduces ``backbone``'s last layer for ``tokens`` tokens, else why not."""
    name = type(backbone).__name__
    if name not in SUPPORTED:
        return f"{name} is not one of {', '.join(SUPPORTED)}"
    config = backbone.config
    if getattr(config, "attention_dropout", 0.0):
        return f"attention_dropout={config.attention_dropout}"
    window = getattr(config, "sliding_window", None)
    if window is not None and getattr(config, "use_sliding_window", True) and window < tokens:
        return f"sliding window {window} < {tokens} tokens"
    first = backbone.layers[0]
    first = getattr(first, "layer", first)  # another thread's forward may have it wrapped (_Packed) right now
    if hasattr(first.self_attn, "q_norm"):
        return "query/key norms"
    return None


class _AtPositions(nn.Module):
    """A decoder layer computed at ``positions`` (b, s) only; ``output`` (b, s, d) holds the result.

    Returns its input unchanged, so what follows in the backbone (the final norm) costs little and is unused."""

    def __init__(self, layer: nn.Module, positions: torch.Tensor, attention_mask: torch.Tensor):
        super().__init__()
        self.layer, self.positions, self.attention_mask = layer, positions, attention_mask
        self.output: torch.Tensor | None = None

    def forward(self, hidden_states: torch.Tensor, position_embeddings: tuple[torch.Tensor, torch.Tensor],
                **kwargs) -> torch.Tensor:
        att = self.layer.self_attn
        b, t, _ = hidden_states.shape
        e = att.head_dim
        rows = torch.arange(b, device=hidden_states.device)[:, None]  # (b, 1)
        x = self.layer.input_layernorm(hidden_states)  # (b, t, d)
        cos, sin = (c.expand(b, -1, -1) for c in position_embeddings)  # (b, t, e)
        k = att.k_proj(x).view(b, t, -1, e).transpose(1, 2)  # (b, g, t, e)
        v = att.v_proj(x).view(b, t, -1, e).transpose(1, 2)
        k = rotate(k, cos[:, None], sin[:, None])
        s = self.positions.shape[1]
        q = att.q_proj(x[rows, self.positions]).view(b, s, -1, e).transpose(1, 2)  # (b, h, s, e)
        q_cos, q_sin = cos[rows, self.positions][:, None], sin[rows, self.positions][:, None]  # (b, 1, s, e)
        q = rotate(q, q_cos, q_sin)
        # causal by index, as the plain forward's mask: key j is seen from position p when j <= p and j is a token
        keys = torch.arange(t, device=hidden_states.device)
        mask = (keys[None, None, :] <= self.positions[:, :, None]) & self.attention_mask.bool()[:, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None], scale=att.scaling, enable_gqa=True)
        y = hidden_states[rows, self.positions] + att.o_proj(out.transpose(1, 2).reshape(b, s, -1))  # (b, s, d)
        self.output = y + self.layer.mlp(self.layer.post_attention_layernorm(y))
        return hidden_states


class _Packed(nn.Module):
    """A decoder layer computed at the real tokens only (``flat``: their indices in the flattened (b * t), and a
    few padded positions that round the row count: :func:`packed_rows`)."""

    def __init__(self, layer: nn.Module, keep: torch.Tensor, flat: torch.Tensor):
        super().__init__()
        self.layer, self.keep, self.flat = layer, keep, flat

    def forward(self, hidden_states: torch.Tensor, position_embeddings: tuple[torch.Tensor, torch.Tensor],
                **kwargs) -> torch.Tensor:
        att, keep, flat = self.layer.self_attn, self.keep, self.flat
        b, t, d = hidden_states.shape
        e = att.head_dim
        x = hidden_states.reshape(b * t, d).index_select(0, flat)  # (n, d): the real tokens, row after row
        n = x.shape[0]
        cos, sin = (c.expand(b, -1, -1).reshape(b * t, 1, e).index_select(0, flat) for c in position_embeddings)
        h = self.layer.input_layernorm(x)
        q, k, v = (proj(h).view(n, -1, e) for proj in (att.q_proj, att.k_proj, att.v_proj))  # (n, heads, e)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)

        def padded(z: torch.Tensor) -> torch.Tensor:  # (n, heads, e) -> (b, heads, t, e), zeros at padding
            return z.new_zeros((b * t, *z.shape[1:])).index_copy(0, flat, z).view(b, t, -1, e).transpose(1, 2)

        # causal by index as the plain forward's mask; a padded query sees every key (its output is dropped),
        # so that no row of the mask is empty (SDPA would return NaN there, and NaN gradients)
        index = torch.arange(t, device=x.device)
        mask = ((index[None, :, None] >= index[None, None, :]) & keep[:, None, :]) | ~keep[:, :, None]
        out = F.scaled_dot_product_attention(padded(q), padded(k), padded(v), attn_mask=mask[:, None],
                                             scale=att.scaling, enable_gqa=True)  # (b, h, t, e)
        y = x + att.o_proj(out.transpose(1, 2).reshape(b * t, -1).index_select(0, flat))  # (n, d)
        y = y + self.layer.mlp(self.layer.post_attention_layernorm(y))
        # the other padded positions keep their input
        return hidden_states.reshape(b * t, d).index_copy(0, flat, y).view(b, t, d)


def packed_rows(keep: torch.Tensor, multiple: int) -> torch.Tensor:
    """Indices into the flattened (b * t) of ``keep``'s real tokens, and of as many padded positions as round
    their count up to a multiple of ``multiple`` (or to every position), in order."""
    flat = keep.reshape(-1).nonzero().squeeze(1)
    rows = min(-(-flat.numel() // multiple) * multiple, keep.numel())
    if rows > flat.numel():
        padding = (~keep).reshape(-1).nonzero().squeeze(1)[: rows - flat.numel()]
        flat = torch.cat([flat, padding]).sort().values
    return flat


@contextlib.contextmanager
def last_layer_at(backbone: nn.Module, positions: torch.Tensor, attention_mask: torch.Tensor,
                  pack: bool = True) -> Iterator[_AtPositions]:
    """Within the block the backbone's last layer runs at ``positions`` (b, s) only, and, when the batch is
    padded and ``pack`` is on, the layers below it at the real tokens only; read ``.output`` (b, s, d) after
    the forward, before the final norm (``backbone.norm``)."""
    with _SWAP:
        layers = backbone.layers
        last = min(len(layers), backbone.config.num_hidden_layers) - 1
        originals = list(layers)
        keep = attention_mask.bool()
        flat = packed_rows(keep, PACK_ROWS) if pack else None
        if flat is not None and flat.numel() < keep.numel():
            for i in range(last):
                layers[i] = _Packed(originals[i], keep, flat)
        top = _AtPositions(originals[last], positions, attention_mask)
        layers[last] = top
        try:
            yield top
        finally:
            for i, layer in enumerate(originals):
                layers[i] = layer
