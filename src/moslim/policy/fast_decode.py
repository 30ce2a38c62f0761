"""Decoders for fast sampling: a Llama-family decoder with fused weights and a static KV cache, and a
plain Hugging Face forward with a dynamic cache for every other model.

Both take left-padded prompts, prefill the distinct prompts once (a group of GRPO generations shares
its prompt), copy their cache to each row, then decode one token per call for the rows still kept.
The Llama decoder is the same maths as ``LlamaForCausalLM`` (RMSNorm in float32, rotary embeddings
from the model's own module, SiLU-gated MLP), rearranged for CPU decoding: the q/k/v and gate/up
projections are fused into one matmul each, weights are cast once to the decoding dtype, the cache
is one preallocated tensor, and the per-layer Python is a dozen tensor ops instead of HF's module
stack. ``keep(rows)`` drops finished rows so later steps cost less.

# u = distinct prompts, b = rows kept, p = prompt length (padded), t = cache length,
# d = hidden, h = query heads, g = key/value heads, e = head dim, v = vocabulary, L = layers
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SUPPORTED = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM")


def static_support(model, capacity: int) -> str | None:
    """None when ``StaticDecoder`` reproduces ``model`` exactly, else the reason it cannot."""
    name = type(model).__name__
    if name not in SUPPORTED:
        return f"{name} is not one of {', '.join(SUPPORTED)}"
    config = model.config
    if getattr(config, "hidden_act", "silu") != "silu":
        return f"hidden_act={config.hidden_act!r}"
    window = getattr(config, "sliding_window", None)
    if window is not None and getattr(config, "use_sliding_window", True) and window < capacity:
        return f"sliding window {window} < {capacity} tokens"
    layer = model.model.layers[0]
    if hasattr(layer.self_attn, "q_norm") or getattr(layer.mlp, "experts", None) is not None:
        return "query/key norms or experts"
    return None


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    # as LlamaRMSNorm: statistics in float32, scale in the input dtype
    x32 = x.float()
    x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    return weight * x32.to(x.dtype)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.size(-1) // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin


class StaticDecoder:
    """Decoding state for one batch: weights (cast to ``dtype``), KV cache, positions, padding mask."""

    @torch.no_grad()
    def __init__(self, model, dtype: torch.dtype):
        config = model.config
        base = model.model
        self.dtype = dtype
        self.eps = config.rms_norm_eps
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.scale = self.head_dim ** -0.5
        self.rotary = base.rotary_emb

        def cast(t):
            return None if t is None else t.detach().to(dtype)

        def fused(*linears):
            biases = [m.bias for m in linears]
            bias = None if biases[0] is None else torch.cat([cast(b) for b in biases])
            return torch.cat([cast(m.weight) for m in linears]), bias

        self.embed = cast(base.embed_tokens.weight)  # (v, d)
        head = model.get_output_embeddings().weight
        self.lm_head = self.embed if head is base.embed_tokens.weight else cast(head)  # tied: one copy
        self.norm = cast(base.norm.weight)
        self.layers = []
        for layer in base.layers:
            att, mlp = layer.self_attn, layer.mlp
            wqkv, bqkv = fused(att.q_proj, att.k_proj, att.v_proj)
            wgu, bgu = fused(mlp.gate_proj, mlp.up_proj)
            self.layers.append((cast(layer.input_layernorm.weight), wqkv, bqkv, cast(att.o_proj.weight),
                                cast(att.o_proj.bias), cast(layer.post_attention_layernorm.weight), wgu, bgu,
                                cast(mlp.down_proj.weight), cast(mlp.down_proj.bias)))

    # -- one pass over the layers -------------------------------------------------------------
    def _forward(self, x, cos, sin, mask, write):
        """x (n, s, d) -> hidden (n, s, d); ``write(l, k, v)`` stores keys/values (n, g, s, e), returns
        the keys/values to attend over."""
        n, s, _ = x.shape
        h, g, e = self.heads, self.kv_heads, self.head_dim
        for index, (ln1, wqkv, bqkv, wo, bo, ln2, wgu, bgu, wdown, bdown) in enumerate(self.layers):
            qkv = F.linear(_rms_norm(x, ln1, self.eps), wqkv, bqkv)
            q, k, v = qkv.split((h * e, g * e, g * e), dim=-1)
            q = _rotate(q.view(n, s, h, e).transpose(1, 2), cos, sin)  # (n, h, s, e)
            k = _rotate(k.view(n, s, g, e).transpose(1, 2), cos, sin)  # (n, g, s, e)
            keys, values = write(index, k, v.view(n, s, g, e).transpose(1, 2))
            if s == 1:
                att = self._decode_attention(q, keys, values, mask)
            else:
                att = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=self.scale,
                                                     enable_gqa=True)
            x = x + F.linear(att.transpose(1, 2).reshape(n, s, h * e), wo, bo)
            gate, up = F.linear(_rms_norm(x, ln2, self.eps), wgu, bgu).chunk(2, dim=-1)
            x = x + F.linear(F.silu(gate) * up, wdown, bdown)
        return _rms_norm(x, self.norm, self.eps)

    def _decode_attention(self, q, keys, values, mask):
        """One query per row: q (n, h, 1, e), keys/values (n, g, t, e), mask (n, 1, 1, t) -> (n, h, 1, e).

        Two batched matmuls with the query heads grouped per key/value head: on CPU this is several
        times faster than SDPA's flash kernel for a single query (measured: 5 ms -> <1 ms per layer).
        """
        n, h, _, e = q.shape
        g = keys.size(1)
        scores = q.view(n, g, h // g, e) @ keys.transpose(-1, -2)  # (n, g, h/g, t)
        scores = (scores.float() * self.scale).masked_fill(~mask, float("-inf"))
        att = scores.softmax(dim=-1).to(values.dtype) @ values  # (n, g, h/g, e)
        return att.view(n, h, 1, e)

    def _cos_sin(self, positions):
        dummy = torch.empty(0, dtype=self.dtype, device=positions.device)
        cos, sin = self.rotary(dummy, positions)  # (n, s, e) each, in self.dtype
        return cos[:, None], sin[:, None]  # (n, 1, s, e): broadcast over heads

    # -- the public steps ---------------------------------------------------------------------
    @torch.no_grad()
    def prefill(self, ids: torch.Tensor, mask: torch.Tensor, rows: torch.Tensor, capacity: int) -> torch.Tensor:
        """Run the distinct prompts ``ids`` (u, p) (left-padded, ``mask`` (u, p) 1 = token) and start
        rows (b,) (row i continues prompt ``rows[i]``); return the next-token logits (b, v)."""
        u, p = ids.shape
        b = rows.numel()
        positions = (mask.long().cumsum(-1) - 1).clamp(min=0)  # (u, p)
        cos, sin = self._cos_sin(positions)
        device = ids.device
        causal = torch.ones(p, p, dtype=torch.bool, device=device).tril()
        # a padding query attends to itself only, so no row of the softmax is empty (NaN would leak)
        attn = (causal & mask.bool()[:, None, :]) | torch.eye(p, dtype=torch.bool, device=device)
        self.cache = torch.zeros(len(self.layers), 2, b, self.kv_heads, capacity, self.head_dim, dtype=self.dtype,
                                 device=device)

        def write(layer, k, v):
            self.cache[layer, 0, :, :, :p] = k[rows]
            self.cache[layer, 1, :, :, :p] = v[rows]
            return k, v

        hidden = self._forward(self.embed[ids], cos, sin, attn[:, None], write)
        self.length = p
        self.valid = torch.zeros(b, capacity, dtype=torch.bool, device=device)  # which cache columns hold real tokens
        self.valid[:, :p] = mask.bool()[rows]
        self.positions = positions[rows, -1]  # (b,) position of each row's last token
        return F.linear(hidden[:, -1], self.lm_head)[rows]

    @torch.no_grad()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Append ``tokens`` (b,) and return the next-token logits (b, v)."""
        t = self.length
        self.positions = self.positions + 1
        self.valid[:, t] = True
        cos, sin = self._cos_sin(self.positions[:, None])
        cache = self.cache

        def write(layer, k, v):
            cache[layer, 0, :, :, t] = k[:, :, 0]
            cache[layer, 1, :, :, t] = v[:, :, 0]
            # attend over the whole cache, unwritten columns masked: a slice [:t + 1] would make the
            # matmul copy the keys and values of every row on every layer (measured: ~20% of a step)
            return cache[layer, 0], cache[layer, 1]

        hidden = self._forward(self.embed[tokens][:, None], cos, sin, self.valid[:, None, None], write)
        self.length = t + 1
        return F.linear(hidden[:, 0], self.lm_head)

    def keep(self, rows: torch.Tensor) -> None:
        """Keep only ``rows`` (b',) of the batch, in that order."""
        self.cache = self.cache[:, :, rows]
        self.valid = self.valid[rows]
        self.positions = self.positions[rows]


class HFDecoder:
    """The same interface over any causal LM's own forward and a ``DynamicCache`` (no weight copy)."""

    def __init__(self, model):
        import inspect

        self.model = model
        # transformers >= 5.2x names the cache argument `cache`; earlier 5.x `past_key_values`
        base = model.get_base_model() if hasattr(model, "get_base_model") else model  # PEFT passes kwargs on
        self.cache_arg = "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"

    @torch.no_grad()
    def prefill(self, ids: torch.Tensor, mask: torch.Tensor, rows: torch.Tensor, capacity: int) -> torch.Tensor:
        from transformers import DynamicCache

        ids, mask = ids[rows], mask[rows].long()  # no cache copy here: prefill each row
        self.cache = DynamicCache(config=self.model.config)
        self.mask = mask
        self.positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=self.positions,
                         use_cache=True, logits_to_keep=1, **{self.cache_arg: self.cache})
        self.positions = self.positions[:, -1]
        return out.logits[:, -1]

    @torch.no_grad()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        self.positions = self.positions + 1
        self.mask = torch.cat([self.mask, self.mask.new_ones(len(tokens), 1)], dim=1)
        out = self.model(input_ids=tokens[:, None], attention_mask=self.mask, position_ids=self.positions[:, None],
                         use_cache=True, logits_to_keep=1, **{self.cache_arg: self.cache})
        return out.logits[:, -1]

    def keep(self, rows: torch.Tensor) -> None:
        self.cache.batch_select_indices(rows)
        self.mask = self.mask[rows]
        self.positions = self.positions[rows]
