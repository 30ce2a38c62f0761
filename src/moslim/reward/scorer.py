"""Scoring (question, answer) pairs with a saved reward model: probs (b, k, c) per pair.

# b = batch, k = objectives (heads), c = classes (padded to the largest head; padded classes get 0)

Pairs are sorted by token length and cut into batches so each batch pads little, run without
gradients on the model's device, then put back in the caller's order. Truncation keeps the answer's
end (see :mod:`moslim.reward.encoding`).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch

from moslim.data.schema import Prompt
from moslim.objectives import ObjectiveSet
from moslim.reward.encoding import Encoded, PairEncoder, model_batch, pad_id_of
from moslim.reward.model import MultiHeadRewardModel

log = logging.getLogger(__name__)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# How a factored objective's two factors become its level probabilities when scoring (the model's own product
# is "harm"; see appropriate_probs for "appropriate").
FACTORED_AS = ("harm", "appropriate")


class RewardScorer:
    def __init__(self, model: MultiHeadRewardModel, tokenizer: Any, device: str | torch.device | None = None,
                 batch_size: int = 32, max_length: int = 512, factored_as: str = "harm"):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if factored_as not in FACTORED_AS:
            raise ValueError(f"factored_as={factored_as!r}: expected one of {', '.join(FACTORED_AS)}")
        if factored_as != "harm" and model.config.factored is None:
            raise ValueError(f"factored_as={factored_as!r} needs a reward model with a factored objective "
                             "(model.factored in its training config); this one has none")
        self.factored_as = factored_as
        self.device = torch.device(device) if device is not None else default_device()
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.encoder = PairEncoder(tokenizer, model.config.input_format, max_length)
        self.pad_id = pad_id_of(tokenizer)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str | torch.device | None = None,
                        batch_size: int = 32, max_length: int | None = None, dtype: torch.dtype | None = None,
                        factored_as: str = "harm") -> RewardScorer:
        """Load a saved reward model and its tokenizer.

        ``max_length``: tokens per pair; ``None`` means the length the model was trained with (512 when
        the model does not record one). Scoring longer than training shows the model inputs it never saw.
        """
        from transformers import AutoTokenizer

        model = MultiHeadRewardModel.from_pretrained(path, dtype=dtype)
        if max_length is None:
            max_length = model.config.train_max_length or 512
        tokenizer = AutoTokenizer.from_pretrained(path)
        return cls(model, tokenizer, device=device, batch_size=batch_size, max_length=max_length,
                   factored_as=factored_as)

    @property
    def objectives(self) -> ObjectiveSet:
        return self.model.objectives

    def score(self, prompts: list[Prompt], responses: list[str], with_factors: bool = False) -> torch.Tensor:
        """prompts (chat or text, system turns ignored), responses -> probs (b, k, c) float32 on CPU.

        ``with_factors``: (b, k', c) over ``model.training_objectives``, a factored objective's two factors
        after the objectives (the same as (b, k, c) for a model without one)."""
        if len(prompts) != len(responses):
            raise ValueError(f"got {len(prompts)} prompts but {len(responses)} responses; they must pair up")
        encoded = [self.encoder.encode(p, r) for p, r in zip(prompts, responses)]
        if self.factored_as == "harm" or with_factors:
            return predict_probs(self.model, encoded, self.pad_id, self.batch_size, self.device, with_factors)
        probs = predict_probs(self.model, encoded, self.pad_id, self.batch_size, self.device, True)
        return appropriate_probs(probs, self.objectives.index(self.model.config.factored), len(self.objectives))

    def levels(self, prompts: list[Prompt], responses: list[str]) -> torch.Tensor:
        """(b, k) long: each head's most probable level."""
        return self.score(prompts, responses).argmax(-1)


@torch.inference_mode()
def predict_probs(model: MultiHeadRewardModel, encoded: list[Encoded], pad_id: int, batch_size: int,
                  device: torch.device, with_factors: bool = False) -> torch.Tensor:
    """Encoded pairs -> probs (n, k, c) float32 on CPU, in the given order; batches sorted by length.
    ``with_factors``: (n, k', c) over ``model.training_objectives`` (see ``RewardScorer.score``)."""
    was_training = model.training
    model.eval()
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].input_ids), reverse=True)
    k = len(model.training_objectives) if with_factors else len(model.heads)
    c = int(model.num_levels.max())
    probs = torch.zeros((len(encoded), k, c), dtype=torch.float32)
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        batch = model_batch([encoded[i] for i in rows], pad_id, model.needs_question_end)
        output = model(**{name: t.to(device) for name, t in batch.items()})
        logits = model.training_logits(output) if with_factors else output.logits
        probs[rows] = torch.softmax(logits.float(), dim=-1).cpu()  # exp(-inf) = 0 on padded classes
    model.train(was_training)
    return probs


def appropriate_probs(probs: torch.Tensor, factored: int, k: int) -> torch.Tensor:
    """probs (b, k + 2, c) with a factored objective's factors (request unsafe, answer refuses) after the k
    objectives -> (b, k, c) where that objective's level 1 is P(unsafe) x P(refuses) + P(safe) x P(complies):
    the answer refuses exactly when the request is unsafe, XSTest's two rates in one number. Level 0 is then
    "inappropriate": an unsafe request answered *or a safe one refused*. The model's own product (level 1 = 1 -
    P(unsafe) x P(complies)) scores any answer to a safe request 1, so a policy rewarded by it alone is never
    penalised for refusing; this one is."""
    unsafe, refuses = probs[:, k, 1], probs[:, k + 1, 1]
    fit = unsafe * refuses + (1 - unsafe) * (1 - refuses)
    out = probs[:, :k].clone()
    out[:, factored, 0], out[:, factored, 1] = 1 - fit, fit
    return out


def expected_levels(probs: torch.Tensor) -> torch.Tensor:
    """probs (b, k, c) -> (b, k): sum_j j * p_j."""
    return (probs * torch.arange(probs.shape[-1], dtype=probs.dtype)).sum(-1)
