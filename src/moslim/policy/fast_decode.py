"""Decoders for fast sampling: a Llama-family decoder with fused weights and a static KV cache, and a
plain Hugging Face forward with a dynamic cache for every other model.

Both take left-padded prompts, prefill the distinct prompts once (a group of GRPO generations shares
its prompt), copy their cache to each row, then decode one token per call for the rows still kept.
The Llama decoder is the same maths as ``LlamaForCausalLM`` (RMSNorm in float32, rotary embeddings
from the model's own module, SiLU-gated MLP), rearranged for CPU decoding: q/k/v are one matmul with
the attention scale folded into the query weights, weights are cast once to the decoding dtype (and,
in bf16 where oneDNN runs it, reordered once into its blocked layout, the MLP's SiLU and gating
product running as post-ops of its matmuls: see ``_Linears``), the cache is one preallocated tensor,
and the per-layer Python is a couple of dozen tensor ops instead of HF's module stack.
``keep(rows)`` drops finished rows so later steps cost less; ``admit`` adds rows for new prompts mid-way
(continuous batching), moving the cache's used columns so every row's last token shares one column.
Rounding differs from HF's bf16 forward at the level of bf16 itself (tested: log-probs within 0.05 of the
float32 forward).

# u = distinct prompts, b = rows kept, p = prompt length (padded), t = cache length,
# d = hidden, h = query heads, g = key/value heads, e = head dim, v = vocabulary, L = layers
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

SUPPORTED = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM")
GROW = 32  # columns a full cache grows by (the attention reads every column: few spare ones, few copies)


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


def _prompt_attention(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For left-padded prompts' ``mask`` (u, p): which keys each query attends to (u, p, p) and the positions (u, p)."""
    p = mask.size(1)
    causal = torch.ones(p, p, dtype=torch.bool, device=mask.device).tril()
    # a padding query attends to itself only, so no row of the softmax is empty (NaN would leak)
    attn = (causal & mask.bool()[:, None, :]) | torch.eye(p, dtype=torch.bool, device=mask.device)
    return attn, (mask.long().cumsum(-1) - 1).clamp(min=0)


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    # as LlamaRMSNorm: statistics in float32, scale in the input dtype
    return weight * F.rms_norm(x.float(), (x.size(-1),), eps=eps).to(x.dtype)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding, as Llama's ``apply_rotary_pos_emb``: x (..., e), cos and sin broadcast to it."""
    half = x.size(-1) // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin


@functools.cache
def packed_linears_supported(dtype: torch.dtype) -> bool:
    """Whether oneDNN can run bf16 or float32 linears on weights reordered once (``torch.ops.mkldnn``) here."""
    if dtype not in (torch.bfloat16, torch.float32) or not torch.backends.mkldnn.is_available():
        return False
    try:
        weight = torch.ops.mkldnn._reorder_linear_weight(torch.ones(4, 4, dtype=dtype), 2)
        out = torch.ops.mkldnn._linear_pointwise(torch.ones(2, 4, dtype=dtype), weight, None, "none", [], "")
        return bool(torch.equal(out, torch.full((2, 4), 4.0, dtype=dtype)))
    except (RuntimeError, AttributeError):
        return False


class _Linears:
    """``F.linear`` and the SiLU-gated MLP, on plain weights or on weights oneDNN reordered once.

    Decoding multiplies 32-odd rows by each weight once per token: oneDNN's bf16 kernels reorder a
    plain weight on every call, which cost ~30% of the layers' matmul time (measured on SmolLM2,
    AVX512-BF16). Reordered ("packed") weights skip that, and the MLP's SiLU and gating product
    run as post-ops of its matmuls (each rounded once to bf16 instead of after every op). In float32 the
    packed kernels also beat ``F.linear``'s BLAS call at a few dozen rows: 1.1-1.6x on a layer's
    projections and 1.8-2.2x on SmolLM2's head (AVX2, 16-32 rows; ``benchmarks/decode_packed.py``).
    ``packed``: None picks it where oneDNN runs ``dtype``."""

    def __init__(self, dtype: torch.dtype, rows: int, packed: bool | None = None):
        self.packed = packed_linears_supported(dtype) if packed is None else packed and packed_linears_supported(dtype)
        self.rows = rows

    def weight(self, w: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._reorder_linear_weight(w, self.rows) if self.packed else w

    def __call__(self, x, w, b=None):
        if self.packed:
            return torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], "")
        return F.linear(x, w, b)

    def mlp(self, x, gate, up, down):
        """down(silu(gate(x)) * up(x)); each argument is a (weight, bias) pair."""
        if self.packed:
            g = torch.ops.mkldnn._linear_pointwise(x, gate[0], gate[1], "swish", [], "")
            h = torch.ops.mkldnn._linear_pointwise.binary(x, g, up[0], up[1], "mul")
        else:
            h = F.silu(F.linear(x, *gate)) * F.linear(x, *up)
        return self(h, *down)


class StaticDecoder:
    """Decoding state for one batch: weights (cast to ``dtype``), KV cache, positions, padding mask."""

    @torch.no_grad()
    def __init__(self, model, dtype: torch.dtype, rows: int = 32, packed: bool | None = None):
        config = model.config
        base = model.model
        self.dtype = dtype
        self.eps = config.rms_norm_eps
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.rotary = base.rotary_emb
        self.cache, self.length = None, 0  # (L, 2, b, g, t, e) once rows are admitted
        self.linear = linear = _Linears(dtype, rows, packed)
        scale = self.head_dim ** -0.5  # folded into the query weights (exact for a power-of-4 head dim)

        def cast(t, factor=None):
            if t is None:
                return None
            t = t.detach().to(dtype)
            return t if factor is None else t * factor

        def fused_qkv(att):
            e = self.head_dim
            factor = torch.ones(self.heads * e + 2 * self.kv_heads * e, 1, dtype=dtype)
            factor[: self.heads * e] = scale
            weight = linear.weight(torch.cat([cast(m.weight) for m in (att.q_proj, att.k_proj, att.v_proj)]) * factor)
            if att.q_proj.bias is None:
                return weight, None
            return weight, torch.cat([cast(m.bias) for m in (att.q_proj, att.k_proj, att.v_proj)]) * factor[:, 0]

        def plain(m):
            return linear.weight(cast(m.weight)), cast(m.bias)

        self.embed = cast(base.embed_tokens.weight)  # (v, d), looked up by token
        head = model.get_output_embeddings().weight
        # tied head: one cast copy, reordered for the matmul only where linears are packed
        self.lm_head = linear.weight(self.embed if head is base.embed_tokens.weight else cast(head))
        self.norm = cast(base.norm.weight)
        self.layers = [(cast(layer.input_layernorm.weight), fused_qkv(layer.self_attn), plain(layer.self_attn.o_proj),
                        cast(layer.post_attention_layernorm.weight), plain(layer.mlp.gate_proj),
                        plain(layer.mlp.up_proj), plain(layer.mlp.down_proj))
                       for layer in base.layers]

    # -- one pass over the layers -------------------------------------------------------------
    def _forward(self, x, cos, sin, mask, write):
        """x (n, s, d) -> hidden (n, s, d); ``write(l, k, v)`` stores keys/values (n, g, s, e), returns
        the keys/values to attend over. ``mask``: (n, 1, s, t) boolean for a prompt, or (n, 1, 1, t)
        additive float32 for one decoded token."""
        n, s, _ = x.shape
        h, g, e = self.heads, self.kv_heads, self.head_dim
        linear = self.linear
        for index, (ln1, qkv_proj, o_proj, ln2, gate, up, down) in enumerate(self.layers):
            qkv = linear(_rms_norm(x, ln1, self.eps), *qkv_proj)
            # rotate queries and keys in one go: they are the first h + g heads of the fused projection
            qk = rotate(qkv[..., : (h + g) * e].view(n, s, h + g, e).transpose(1, 2), cos, sin)  # (n, h+g, s, e)
            q, k = qk[:, :h], qk[:, h:]
            keys, values = write(index, k, qkv[..., (h + g) * e:].view(n, s, g, e).transpose(1, 2))
            if s == 1:
                att = self._decode_attention(q, keys, values, mask).view(n, 1, h * e)
            else:
                att = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=1.0, enable_gqa=True)
                att = att.transpose(1, 2).reshape(n, s, h * e)
            x = x + linear(att, *o_proj)
            x = x + linear.mlp(_rms_norm(x, ln2, self.eps), gate, up, down)
        return _rms_norm(x, self.norm, self.eps)

    @staticmethod
    def _decode_attention(q, keys, values, bias):
        """One query per row: q (n, h, 1, e) (already scaled), keys/values (n, g, t, e), bias (n, 1, 1, t)
        (0 or -inf) -> (n, g, h/g, e), heads in order.

        Two batched matmuls with the query heads grouped per key/value head: on CPU this is several
        times faster than SDPA's flash kernel for a single query (measured: 5 ms -> <1 ms per layer).
        """
        n, h, _, e = q.shape
        g = keys.size(1)
        scores = q.reshape(n, g, h // g, e) @ keys.transpose(-1, -2)  # (n, g, h/g, t)
        att = torch.softmax(scores + bias, dim=-1).to(values.dtype)  # float32 bias: float32 softmax
        return att @ values

    def _cos_sin(self, positions):
        dummy = torch.empty(0, dtype=self.dtype, device=positions.device)
        cos, sin = self.rotary(dummy, positions)  # (n, s, e) each, in self.dtype
        return cos[:, None], sin[:, None]  # (n, 1, s, e): broadcast over heads

    # -- the public steps ---------------------------------------------------------------------
    @torch.no_grad()
    def prefill(self, ids: torch.Tensor, mask: torch.Tensor, rows: torch.Tensor, capacity: int) -> torch.Tensor:
        """Run the distinct prompts ``ids`` (u, p) (left-padded, ``mask`` (u, p) 1 = token) and start
        rows (b,) (row i continues prompt ``rows[i]``), with room for ``capacity`` tokens in all; return
        the next-token logits (b, v)."""
        self.cache, self.length = None, 0
        return self.admit(ids, mask, rows, capacity)

    @torch.no_grad()
    def admit(self, ids: torch.Tensor, mask: torch.Tensor, rows: torch.Tensor, capacity: int | None = None,
              prefix: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Add rows continuing the distinct prompts ``ids`` (u, p) after the rows held (continuous
        batching), as ``prefill`` does; return the new rows' next-token logits (b, v).

        Every row's last token sits in the same cache column, so the new prompts end where the held
        rows' last tokens are (left padding, as in a prefill), and the held rows' columns move so
        that the longest of the two ends there; columns no row attends to are dropped. ``capacity``:
        the cache's columns after this (default: those in use + ``GROW``; ``step`` grows it when full).
        ``prefix``: (keys (L, 2, r, g, q, e) from ``prefix_keys``, their left-padded mask (r, q), of (u,)): prompt i
        is then prefix ``of[i]`` followed by ``ids[i]`` (prompts sharing a system message prefill it once)."""
        u, p = ids.shape
        q = 0 if prefix is None else prefix[1].size(1)
        held = 0 if self.cache is None else self.cache.size(2)
        used = self._used_columns()
        t = max(used, q + p)
        self._relayout(used, t, capacity or t + GROW, rows.numel())
        cache = self.cache
        attn, positions = _prompt_attention(mask)
        if prefix is None:
            def write(layer, k, v):
                cache[layer, 0, held:, :, t - p:t] = k[rows]
                cache[layer, 1, held:, :, t - p:t] = v[rows]
                return k, v
        else:
            keys, pmask, of = prefix
            seen = pmask.bool()[of]  # (u, q): the prefix columns each prompt attends to
            attn = torch.cat([seen[:, None, :].expand(u, p, q), attn], dim=-1)  # (u, p, q + p)
            positions = positions + pmask.sum(-1)[of][:, None]
            self.bias[held:, 0, 0, t - q - p:t - p].masked_fill_(seen[rows], 0.0)

            def write(layer, k, v):
                k, v = torch.cat([keys[layer][0][of], k], dim=2), torch.cat([keys[layer][1][of], v], dim=2)
                cache[layer, 0, held:, :, t - q - p:t] = k[rows]
                cache[layer, 1, held:, :, t - q - p:t] = v[rows]
                return k, v
        cos, sin = self._cos_sin(positions)
        hidden = self._forward(self.embed[ids], cos, sin, attn[:, None], write)
        # which cache columns each row may attend to, as an additive float32 bias (0 or -inf)
        self.bias[held:, 0, 0, t - p:t].masked_fill_(mask.bool()[rows], 0.0)
        last = positions[rows, -1]  # (b,) position of each new row's last token
        self.positions = last if held == 0 else torch.cat([self.positions, last])
        return self.linear(hidden[:, -1], self.lm_head)[rows]

    def prefix_shape(self, r: int, q: int) -> tuple[int, ...]:
        """The shape of ``prefix_keys`` for r prefixes of q tokens: (L, 2, r, g, q, e)."""
        return len(self.layers), 2, r, self.kv_heads, q, self.head_dim

    @torch.no_grad()
    def prefix_keys(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The keys and values (L, 2, r, g, q, e) of the left-padded prefixes ``ids`` (r, q): ``admit``'s ``prefix``."""
        attn, positions = _prompt_attention(mask)
        cos, sin = self._cos_sin(positions)
        keys = []

        def write(layer, k, v):
            keys.append((k, v))
            return k, v

        self._forward(self.embed[ids], cos, sin, attn[:, None], write)
        return torch.stack([torch.stack(kv) for kv in keys])

    def _used_columns(self) -> int:
        """How many of the last columns some held row attends to (0 when no row is held)."""
        if self.cache is None or self.cache.size(2) == 0:
            return 0
        used = (self.bias[:, 0, 0, :self.length] == 0).any(0).nonzero()
        return self.length - int(used[0]) if len(used) else 0

    def _relayout(self, used: int, length: int, capacity: int, new_rows: int = 0) -> None:
        """A cache of ``capacity`` columns with ``new_rows`` empty rows after those held, whose ``used``
        last columns (``_used_columns``) move to end at column ``length`` (the new length)."""
        held = 0 if self.cache is None else self.cache.size(2)
        shape = (len(self.layers), 2, held + new_rows, self.kv_heads, capacity, self.head_dim)
        device = self.embed.device
        # every column the attention reads must be finite (a masked column still multiplies a value by 0): those not
        # copied are zeroed, the copied ones written once (zeroing them first cost ~1/3 of a move)
        cache = torch.empty(shape, dtype=self.dtype, device=device)
        bias = torch.full((held + new_rows, 1, 1, capacity), float("-inf"), device=device)
        cache[:, :, held:].zero_()
        cache[:, :, :held, :, :length - used].zero_()
        cache[:, :, :held, :, length:].zero_()
        if used:
            cache[:, :, :held, :, length - used:length] = self.cache[..., self.length - used:self.length, :]
            bias[:held, ..., length - used:length] = self.bias[..., self.length - used:self.length]
        self.cache, self.bias, self.length = cache, bias, length

    @torch.no_grad()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Append ``tokens`` (b,) and return the next-token logits (b, v)."""
        if self.length == self.cache.size(-2):  # full: drop the columns no row uses, add GROW
            used = self._used_columns()
            self._relayout(used, used, used + GROW)
        t = self.length
        self.positions = self.positions + 1
        self.bias[:, 0, 0, t] = 0.0
        cos, sin = self._cos_sin(self.positions[:, None])
        cache = self.cache

        def write(layer, k, v):
            cache[layer, 0, :, :, t] = k[:, :, 0]
            cache[layer, 1, :, :, t] = v[:, :, 0]
            # attend over the whole cache, unwritten columns masked: a slice [:t + 1] would make the
            # matmul copy the keys and values of every row on every layer (measured: ~20% of a step)
            return cache[layer, 0], cache[layer, 1]

        hidden = self._forward(self.embed[tokens][:, None], cos, sin, self.bias, write)
        self.length = t + 1
        return self.linear(hidden[:, 0], self.lm_head)

    def keep(self, rows: torch.Tensor) -> None:
        """Keep only ``rows`` (b',) of the batch, in that order."""
        self.cache = self.cache[:, :, rows]
        self.bias = self.bias[rows]
        self.positions = self.positions[rows]


def cache_argument(model) -> str:
    """The name of ``model.forward``'s KV-cache argument: ``cache`` in transformers >= 5.2x, earlier
    5.x ``past_key_values``."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


class HFDecoder:
    """The same interface over any causal LM's own forward and a ``DynamicCache`` (no weight copy)."""

    def __init__(self, model):
        self.model = model
        base = model.get_base_model() if hasattr(model, "get_base_model") else model  # PEFT passes kwargs on
        self.cache_arg = cache_argument(base)

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
