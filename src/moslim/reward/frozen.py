"""A frozen lower part of a decoder backbone, run once per example and cached.

# b = batch, t = tokens, d = hidden

When the embeddings and the first ``n`` transformer layers are frozen, their output for a given
(question, answer) never changes during training. :class:`FrozenPrefix` runs them once per example
(no gradients, batches sorted by length) and keeps the hidden state that enters layer ``n``; the
training loop then runs only layers ``n..`` and the heads on that cache, for as many epochs as it
likes, at a fraction of the cost of the whole backbone.

How the top runs: the backbone's layer list is swapped for its tail while the cached states go in
as ``inputs_embeds``. That is exact for decoders whose ``inputs_embeds`` enter the first layer
unchanged (Llama, Mistral, Qwen2, SmolLM2: no embedding scale, no learned positions);
:meth:`FrozenPrefix.check` compares the cached path with a plain forward on real rows before
training relies on it, and the caller falls back to the plain path when they differ.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import torch

from moslim.reward.encoding import Encoded, collate, model_batch

log = logging.getLogger(__name__)


def layer_stack(backbone: torch.nn.Module) -> tuple[torch.nn.Module, str]:
    """(the module holding the transformer layers, the attribute name of its ModuleList)."""
    total = backbone.config.num_hidden_layers
    for module in backbone.modules():
        for name, child in module.named_children():
            if isinstance(child, torch.nn.ModuleList) and len(child) == total:
                return module, name
    raise ValueError(f"found no list of {total} layers in {type(backbone).__name__}")


def freeze_prefix(backbone: torch.nn.Module, n: int, field: str = "model.freeze_layers") -> None:
    """Freeze the input embeddings and the first ``n`` layers (the rest keep their requires_grad)."""
    owner, name = layer_stack(backbone)
    layers = getattr(owner, name)
    if not 1 <= n <= len(layers):
        raise ValueError(f"{field} {n} must be between 1 and the backbone's {len(layers)} layers")
    backbone.get_input_embeddings().requires_grad_(False)
    for layer in layers[:n]:
        layer.requires_grad_(False)


@contextlib.contextmanager
def only_layers(backbone: torch.nn.Module, start: int, stop: int | None = None) -> Iterator[None]:
    """Within the block the backbone runs layers ``start:stop`` only (the same modules, not copies)."""
    owner, name = layer_stack(backbone)
    full = getattr(owner, name)
    setattr(owner, name, torch.nn.ModuleList(list(full)[start:stop]))
    try:
        yield
    finally:
        setattr(owner, name, full)


def pad_states(states: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Cached states, (t_i, d) each -> hidden (b, t, d) right-padded with zeros, attention_mask (b, t)."""
    t = max(s.shape[0] for s in states)
    hidden = states[0].new_zeros((len(states), t, states[0].shape[-1]))
    mask = torch.zeros((len(states), t), dtype=torch.long)
    for row, s in enumerate(states):
        hidden[row, : s.shape[0]] = s
        mask[row, : s.shape[0]] = 1
    return hidden, mask


class FrozenPrefix:
    """Hidden states after the first ``n`` layers, one (t_i, d) tensor per example, kept in memory."""

    def __init__(self, model: torch.nn.Module, n: int, pad_id: int, device: torch.device,
                 batch_size: int = 32, dtype: torch.dtype = torch.float32, autocast: bool = False):
        self.model, self.n, self.pad_id, self.device = model, n, pad_id, device
        self.batch_size, self.dtype, self.autocast = batch_size, dtype, autocast
        self._captured: torch.Tensor | None = None

    @torch.inference_mode()
    def encode(self, items: list[Encoded], progress=None) -> list[torch.Tensor]:
        """Run the frozen layers once over ``items``; returns their states in the given order."""
        backbone = self.model.backbone
        out: list[torch.Tensor | None] = [None] * len(items)
        order = sorted(range(len(items)), key=lambda i: len(items[i].input_ids), reverse=True)
        was_training = backbone.training
        backbone.eval()
        owner, name = layer_stack(backbone)
        last = getattr(owner, name)[self.n - 1]
        hook = last.register_forward_hook(self._capture)
        try:
            with only_layers(backbone, 0, self.n), torch.autocast(self.device.type, dtype=torch.bfloat16,
                                                                   enabled=self.autocast):
                for start in range(0, len(order), self.batch_size):
                    rows = order[start:start + self.batch_size]
                    batch = collate([items[i] for i in rows], self.pad_id)
                    self.model.backbone(**self.model.backbone_inputs(
                        batch["input_ids"].to(self.device), batch["attention_mask"].to(self.device)))
                    hidden = self._captured  # (b, t, d), right-padded
                    lengths = batch["attention_mask"].sum(-1).tolist()
                    for row, i in enumerate(rows):
                        out[i] = hidden[row, : lengths[row]].to(self.dtype).cpu().clone()
                    if progress is not None:
                        progress(len(rows))
        finally:
            hook.remove()
            backbone.train(was_training)
        return out  # type: ignore[return-value]

    def _capture(self, module, args, output) -> None:
        self._captured = output[0] if isinstance(output, tuple) else output

    def top_logits(self, states: list[torch.Tensor], question_end: torch.Tensor | None = None) -> torch.Tensor:
        """Cached states of a batch -> training logits (b, k', c) from layers ``n..`` and the heads (with gradients)."""
        hidden, mask = pad_states(states)
        with only_layers(self.model.backbone, self.n):
            extra = {"question_end": question_end} if self.model.needs_question_end else {}
            output = self.model(inputs_embeds=hidden.to(self.device), attention_mask=mask.to(self.device), **extra)
            return self.model.training_logits(output)

    @torch.inference_mode()
    def check(self, items: list[Encoded], states: list[torch.Tensor], atol: float = 2e-2) -> float:
        """Max |logit difference| between the cached path and a plain forward on ``items`` (eval mode).

        Raises ValueError when it exceeds ``atol``: the backbone transforms ``inputs_embeds`` on the way in
        (an embedding scale, learned positions), so the cache cannot stand in for its lower layers.
        """
        was_training = self.model.training
        self.model.eval()
        try:
            batch = model_batch(items, self.pad_id, self.model.needs_question_end)
            full = self.model.training_logits(self.model(**{k: v.to(self.device) for k, v in batch.items()})).float()
            cached = self.top_logits(states, batch.get("question_end")).float()
        finally:
            self.model.train(was_training)
        finite = torch.isfinite(full)
        diff = float((full[finite] - cached[finite]).abs().max())
        if diff > atol:
            raise ValueError(f"the cached lower layers change the logits by up to {diff:.3g} (> {atol}): "
                             f"this backbone does not feed inputs_embeds straight into its first layer")
        return diff
