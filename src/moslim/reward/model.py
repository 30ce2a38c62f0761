"""The multi-head classification reward model: one backbone pass, one classification head per objective.

# b = batch, t = tokens, d = hidden, k = objectives (heads), c = classes (padded to the largest head)

``MultiHeadRewardModel`` is a Hugging Face ``PreTrainedModel``: any ``AutoModel`` backbone (its config
nested as ``text_config``), a pooling of the token states into one vector per example, and k linear
heads. Heads may have different numbers of classes; their logits are padded to c with ``-inf`` so a
softmax gives the padded classes probability 0. The saved folder is self-describing: ``config.json``
carries the objective set and labelling spec, and ``objectives.yaml`` repeats them for people.

A *factored* objective (``config.factored``, two levels) has no class logits of its own. Its head's two
outputs are the logits of two binary *factors*, a request factor (level 1: the request is unsafe) and an
answer factor (level 1: the answer refuses), and its harmful level 0 gets the probability
P(request unsafe) x P(answer complies): XSTest's rule, where refusing an unsafe request and any answer to a
safe one are harmless. Each factor learns from its own labels (``config.factors`` names them: prompt sets
whose safety is known, human refusal labels), far more rows than the product's rare level 0 has, and the
product's own labels and preference pairs train both through it.
"""

from __future__ import annotations

import inspect
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedConfig, PreTrainedModel
from transformers.configuration_utils import SubConfigSpec
from transformers.utils import ModelOutput

from moslim.objectives import ObjectiveSet
from moslim.reward import pooled_top

log = logging.getLogger(__name__)

POOLINGS = ("last", "mean", "cls")
INPUT_FORMATS = ("chat", "plain", "pair")
OBJECTIVES_FILE = "objectives.yaml"


@strict
class MultiHeadRewardConfig(PreTrainedConfig):
    """Backbone config (``text_config``), objectives (``ObjectiveSet.to_dict()`` form), pooling, input format.

    - ``pooling``: ``"last"`` (last non-pad token, for decoders), ``"mean"`` or ``"cls"`` (encoders).
    - ``input_format``: how (question, answer) becomes tokens, see :mod:`moslim.reward.encoding`:
      ``"chat"`` (the tokenizer's chat template), ``"plain"`` (``Question: ... Answer: ...``) or
      ``"pair"`` (``[CLS] question [SEP] answer [SEP]``, encoders).
    - ``labelling``: the labelling spec the training labels came from (free-form, kept for people).
    - ``train_max_length``: the token budget per pair in training; the scorer's default, so scoring
      truncates the way training did.
    """

    model_type = "moslim_multihead_rm"
    sub_configs_defaults = {"text_config": SubConfigSpec(config_class=AutoConfig, model_type="llama")}

    text_config: dict | PreTrainedConfig | None = None
    objectives: dict | None = None
    labelling: dict | None = None
    pooling: str = "last"
    input_format: str = "chat"
    head_dropout: float = 0.0
    train_max_length: int | None = None
    factored: str | None = None
    factors: dict | None = None
    request_at_question_end: bool = False  # the request factor reads the question's last token, not the pooled one

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling {self.pooling!r} is not one of {', '.join(POOLINGS)}")
        if self.input_format not in INPUT_FORMATS:
            raise ValueError(f"input_format {self.input_format!r} is not one of {', '.join(INPUT_FORMATS)}")
        if self.objectives is None:
            raise ValueError("MultiHeadRewardConfig needs `objectives` (ObjectiveSet.to_dict())")
        if self.factored is not None:
            objectives = self.objective_set
            if self.factored not in objectives or objectives[self.factored].num_levels != 2:
                raise ValueError(f"factored objective {self.factored!r} must be one of the objectives "
                                 f"({', '.join(objectives.names)}) and have 2 levels")
            factors = self.factor_set
            if factors is None or len(factors) != 2 or any(f.num_levels != 2 for f in factors):
                raise ValueError(f"factored objective {self.factored!r} needs `factors`: two objectives of 2 "
                                 f"levels each (the request factor, then the answer factor), got "
                                 f"{factors.names if factors else None}")

    @property
    def objective_set(self) -> ObjectiveSet:
        return ObjectiveSet.from_dict(self.objectives, source="reward model config")

    @property
    def factor_set(self) -> ObjectiveSet | None:
        return ObjectiveSet.from_dict(self.factors, source="reward model config (factors)") if self.factors else None


@dataclass
class MultiHeadRewardOutput(ModelOutput):
    """``logits`` (b, k, c) with ``-inf`` on padded classes; ``pooled`` (b, d); ``factor_logits`` (b, 2), the
    factored objective's request and answer factors (level-1 logits), or None."""

    logits: torch.Tensor | None = None
    pooled: torch.Tensor | None = None
    factor_logits: torch.Tensor | None = None


def is_decoder_config(config: PreTrainedConfig) -> bool:
    """True for causal-LM-only architectures (Llama, SmolLM2, GPT-2); False for BERT-like encoders."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    kind = config.model_type
    return kind in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and kind not in MODEL_FOR_MASKED_LM_MAPPING_NAMES


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """hidden (b, t, d), attention_mask (b, t) -> (b, d). Correct for left and right padding."""
    if pooling == "mean":
        mask = attention_mask.to(hidden.dtype)
        return (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), pool_index(attention_mask, pooling)]


def pool_index(attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """attention_mask (b, t) -> (b,) the position a ``"last"`` or ``"cls"`` pooling reads."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    if pooling == "last":
        return (attention_mask * positions).argmax(-1)  # the largest position with mask 1
    if pooling == "cls":
        return (attention_mask * (attention_mask.shape[1] - positions)).argmax(-1)  # the smallest one
    raise ValueError(f"pooling {pooling!r} is not one of {', '.join(POOLINGS)}")


class MultiHeadRewardModel(PreTrainedModel):
    config_class = MultiHeadRewardConfig
    base_model_prefix = "backbone"
    _supports_sdpa = True

    def __init__(self, config: MultiHeadRewardConfig):
        super().__init__(config)
        self.backbone = AutoModel.from_config(config.text_config)
        self.dropout = nn.Dropout(config.head_dropout)
        self.heads = self._build_heads()
        self._takes_position_ids = "position_ids" in inspect.signature(self.backbone.forward).parameters
        # run the last layer at the pooled positions only where it gives a plain forward's numbers (pooled_top)
        self.top_at_pooled = True
        self.pack_tokens = True  # ... and, when it does, the layers below at a padded batch's real tokens only
        self.post_init()

    def _build_heads(self) -> nn.ModuleList:
        hidden = self.config.text_config.hidden_size
        return nn.ModuleList(nn.Linear(hidden, o.num_levels) for o in self.config.objective_set)

    def _init_weights(self, module):
        if any(module is head for head in getattr(self, "heads", [])):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
        elif hasattr(self, "backbone"):
            self.backbone._init_weights(module)

    @property
    def objectives(self) -> ObjectiveSet:
        return self.config.objective_set

    @property
    def num_levels(self) -> torch.Tensor:
        """(k,) long: each head's number of levels."""
        return torch.tensor([head.out_features for head in self.heads], dtype=torch.long)

    @property
    def needs_question_end(self) -> bool:
        """Whether forward() needs ``question_end`` (the request factor read at the question's last token)."""
        return bool(self.config.factored and self.config.request_at_question_end)

    @property
    def training_objectives(self) -> ObjectiveSet:
        """What training labels name: the objectives, then the factors of a factored objective (if any)."""
        return self.objectives.extended(self.config.factor_set)

    def training_logits(self, output: MultiHeadRewardOutput) -> torch.Tensor:
        """(b, k', c) logits over :attr:`training_objectives`: the objectives', then each factor's as two
        classes (0, its level-1 logit), so the masked per-head loss trains the factors like any head."""
        if output.factor_logits is None:
            return output.logits
        f = output.factor_logits.to(output.logits.dtype)  # (b, 2)
        extra = output.logits.new_full((f.shape[0], 2, output.logits.shape[-1]), float("-inf"))
        extra[..., 0] = 0.0
        extra[..., 1] = f
        return torch.cat([output.logits, extra], dim=1)

    @classmethod
    def from_backbone(cls, name_or_path: str | os.PathLike, objectives: ObjectiveSet,
                      pooling: str | None = None, input_format: str | None = None,
                      labelling: dict | None = None, head_dropout: float = 0.0,
                      seed: int = 0, factored: str | None = None, factors: ObjectiveSet | None = None,
                      request_at_question_end: bool = False, **load_kwargs: Any) -> MultiHeadRewardModel:
        """A fresh reward model on a pretrained backbone folder; heads initialised from ``seed``.

        Defaults: decoders pool the ``"last"`` token and read the ``"chat"`` format when the tokenizer
        has a chat template (the caller passes ``input_format``), encoders pool ``"mean"`` over ``"pair"``.
        """
        backbone = AutoModel.from_pretrained(name_or_path, **load_kwargs)
        decoder = is_decoder_config(backbone.config)
        config = MultiHeadRewardConfig(
            text_config=backbone.config, objectives=objectives.to_dict(), labelling=labelling,
            pooling=pooling or ("last" if decoder else "mean"),
            input_format=input_format or ("chat" if decoder else "pair"), head_dropout=head_dropout,
            factored=factored, factors=factors.to_dict() if factors is not None else None,
            request_at_question_end=request_at_question_end,
        )
        with torch.device("meta"):  # skip a throw-away random init of the whole backbone
            model = cls(config)
        model.backbone = backbone
        generator = torch.Generator().manual_seed(seed)
        model.heads = model._build_heads().to(backbone.dtype)
        for head in model.heads:
            head.weight.data.normal_(0.0, 0.02, generator=generator)
            head.bias.data.zero_()
        return model

    def backbone_inputs(self, input_ids: torch.Tensor | None, attention_mask: torch.Tensor,
                        token_type_ids: torch.Tensor | None = None,
                        inputs_embeds: torch.Tensor | None = None) -> dict[str, Any]:
        """The backbone's keyword arguments for one batch (token ids, or ready hidden states)."""
        inputs: dict[str, Any] = {"attention_mask": attention_mask}
        if inputs_embeds is not None:
            inputs["inputs_embeds"] = inputs_embeds
        else:
            inputs["input_ids"] = input_ids
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        if self._takes_position_ids:
            # Positions count real tokens only, so a left-padded row sees the same positions as a right-padded one.
            inputs["position_ids"] = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        return inputs

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None,
                question_end: torch.Tensor | None = None, **kwargs: Any) -> MultiHeadRewardOutput:
        """input_ids (or inputs_embeds (b, t, d)), attention_mask (b, t) -> logits (b, k, c), padded classes
        at -inf. ``inputs_embeds`` lets :mod:`moslim.reward.frozen` feed cached lower-layer states."""
        if attention_mask is None:
            raise ValueError("MultiHeadRewardModel needs an attention_mask (b, t)")
        inputs = self.backbone_inputs(input_ids, attention_mask, token_type_ids, inputs_embeds)
        reads_question = bool(self.config.factored and self.config.request_at_question_end)
        if reads_question and question_end is None:
            raise ValueError("this reward model reads the request factor at the question's last token: "
                             "pass question_end (b,) (moslim.reward.encoding.question_ends)")
        if self.top_at_pooled and self.config.pooling == "last" \
                and pooled_top.support(self.backbone, attention_mask.shape[1]) is None:
            # the last layer at the positions read only (moslim.reward.pooled_top): the same numbers, ~1 layer less
            last = pool_index(attention_mask, "last")  # (b,)
            positions = torch.stack([last, question_end.to(last.device)], -1) if reads_question else last[:, None]
            with pooled_top.last_layer_at(self.backbone, positions, attention_mask, self.pack_tokens) as top:
                self.backbone(**inputs, **kwargs)
            selected = self.backbone.norm(top.output)  # (b, s, d)
            pooled, at_question = selected[:, 0], (selected[:, 1] if reads_question else None)
        else:
            hidden = self.backbone(**inputs, **kwargs).last_hidden_state  # (b, t, d)
            pooled = pool(hidden, attention_mask, self.config.pooling)  # (b, d)
            rows = torch.arange(hidden.shape[0], device=hidden.device)
            at_question = hidden[rows, question_end.to(hidden.device)] if reads_question else None
        features = self.dropout(pooled)
        c = max(head.out_features for head in self.heads)
        logits = features.new_full((features.shape[0], len(self.heads), c), float("-inf"))
        factored = self.objectives.index(self.config.factored) if self.config.factored else None
        factor_logits = None
        for i, head in enumerate(self.heads):
            out = head(features.to(head.weight.dtype)).to(logits.dtype)
            if i == factored and at_question is not None:
                request = head(self.dropout(at_question).to(head.weight.dtype)).to(logits.dtype)[:, 0]
                out = torch.stack([request, out[:, 1]], dim=-1)
            if i == factored:
                factor_logits = out
                out = factored_log_probs(out.float()).to(logits.dtype)
            logits[:, i, : head.out_features] = out
        return MultiHeadRewardOutput(logits=logits, pooled=pooled, factor_logits=factor_logits)

    def save_pretrained(self, save_directory: str | os.PathLike, *args: Any, **kwargs: Any) -> None:
        super().save_pretrained(save_directory, *args, **kwargs)
        data = self.objectives.to_dict()
        if self.config.labelling:
            data["labelling"] = self.config.labelling
        Path(save_directory, OBJECTIVES_FILE).write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def factored_log_probs(factor_logits: torch.Tensor) -> torch.Tensor:
    """(b, 2) level-1 logits of (request unsafe, answer refuses) -> (b, 2) log-probabilities of the factored
    objective: level 0 (harmful) = P(unsafe) x P(complies), level 1 = the rest."""
    unsafe, refuses = factor_logits.unbind(-1)
    log_harm = (torch.nn.functional.logsigmoid(unsafe) + torch.nn.functional.logsigmoid(-refuses)).clamp(max=-1e-7)
    return torch.stack([log_harm, torch.log(-torch.expm1(log_harm))], dim=-1)


def save_reward_model(model: MultiHeadRewardModel, tokenizer: Any, path: str | os.PathLike) -> Path:
    """Save model + tokenizer into ``path`` atomically: a temp folder renamed into place when complete."""
    from moslim.paths import atomic_folder

    path = Path(path)
    with atomic_folder(path) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return path


AutoConfig.register(MultiHeadRewardConfig.model_type, MultiHeadRewardConfig, exist_ok=True)
AutoModel.register(MultiHeadRewardConfig, MultiHeadRewardModel, exist_ok=True)
