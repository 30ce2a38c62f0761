"""(question, answer) -> token ids, the same way for training and scoring.

The reward model reads the plain question and answer only: chat prompts lose their system turns
(where a policy's preference lives) through :func:`moslim.data.schema.prompt_text`.

Formats (``MultiHeadRewardConfig.input_format``):
- ``chat``: the tokenizer's chat template with one user and one assistant turn;
- ``plain``: ``Question: {q}\\n\\nAnswer: {a}`` followed by the EOS token (decoders without a template);
- ``pair``: ``[CLS] q [SEP] a [SEP]`` with token types 0 / 1 (BERT-style encoders).

Truncation policy, when question + answer exceed ``max_length``: the answer keeps its *end* (where a
refusal's reason or a conclusion sits), the question keeps its *start*. The question gets at most a
quarter of the token budget when the answer alone would overflow, and all the room the answer
leaves otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from moslim.data.schema import Prompt, prompt_text

_Q, _A = "\x00MOSLIM_QUESTION\x00", "\x00MOSLIM_ANSWER\x00"


@dataclass
class Encoded:
    input_ids: list[int]
    token_type_ids: list[int] | None = None
    question_end: int | None = None  # index of the question's last token (a causal model has not seen the answer)


class PairEncoder:
    """Turns (prompt, response) pairs into token ids for one tokenizer and one input format."""

    def __init__(self, tokenizer: Any, input_format: str, max_length: int):
        self.tokenizer = tokenizer
        self.input_format = input_format
        self.max_length = max_length
        self.pieces = self._template_pieces()  # token ids around the question and the answer
        overhead = sum(len(p) for p in self.pieces)
        if overhead + 2 > max_length:
            raise ValueError(f"max_length {max_length} leaves no room: the {input_format!r} format alone "
                             f"takes {overhead} tokens")
        self.budget = max_length - overhead

    def _template_pieces(self) -> tuple[list[int], list[int], list[int]]:
        tok = self.tokenizer
        if self.input_format == "pair":
            if tok.cls_token_id is None or tok.sep_token_id is None:
                raise ValueError("input_format 'pair' needs a tokenizer with CLS and SEP tokens (a BERT-style "
                                 "encoder); use 'chat' or 'plain' for this backbone")
            return [tok.cls_token_id], [tok.sep_token_id], [tok.sep_token_id]
        if self.input_format == "chat":
            if not getattr(tok, "chat_template", None):
                raise ValueError("input_format 'chat' needs a tokenizer with a chat template; use 'plain'")
            text = tok.apply_chat_template([{"role": "user", "content": _Q}, {"role": "assistant", "content": _A}],
                                           tokenize=False)
        elif self.input_format == "plain":
            text = f"Question: {_Q}\n\nAnswer: {_A}{tok.eos_token or ''}"
        else:
            raise ValueError(f"unknown input_format {self.input_format!r}; valid: chat, plain, pair")
        head, rest = text.split(_Q)
        middle, tail = rest.split(_A)
        return tuple(tok(part, add_special_tokens=False)["input_ids"] for part in (head, middle, tail))

    def encode(self, prompt: Prompt, response: str) -> Encoded:
        question = self.tokenizer(prompt_text(prompt), add_special_tokens=False, verbose=False)["input_ids"]
        answer = self.tokenizer(response, add_special_tokens=False, verbose=False)["input_ids"]
        question, answer = truncate_pair(question, answer, self.budget)
        head, middle, tail = self.pieces
        ids = head + question + middle + answer + tail
        types = None
        if self.input_format == "pair":
            types = [0] * (len(head) + len(question) + len(middle)) + [1] * (len(answer) + len(tail))
        return Encoded(ids, types, question_end=len(head) + max(len(question), 1) - 1)


def truncate_pair(question: list[int], answer: list[int], budget: int) -> tuple[list[int], list[int]]:
    """Fit question + answer into ``budget`` tokens: the question keeps its start, the answer its end."""
    if len(question) + len(answer) <= budget:
        return question, answer
    q_keep = min(len(question), max(budget // 4, budget - len(answer)))
    a_keep = budget - q_keep
    return question[:q_keep], answer[len(answer) - a_keep:]


def collate(items: list[Encoded], pad_id: int, padding_side: str = "right") -> dict[str, torch.Tensor]:
    """Pad a batch: input_ids, attention_mask (b, t) and token_type_ids when the format has them."""
    t = max(len(item.input_ids) for item in items)
    ids = torch.full((len(items), t), pad_id, dtype=torch.long)
    mask = torch.zeros((len(items), t), dtype=torch.long)
    types = torch.zeros((len(items), t), dtype=torch.long) if items[0].token_type_ids is not None else None
    for row, item in enumerate(items):
        n = len(item.input_ids)
        span = slice(0, n) if padding_side == "right" else slice(t - n, t)
        ids[row, span] = torch.tensor(item.input_ids)
        mask[row, span] = 1
        if types is not None:
            types[row, span] = torch.tensor(item.token_type_ids)
    batch = {"input_ids": ids, "attention_mask": mask}
    if types is not None:
        batch["token_type_ids"] = types
    return batch


def model_batch(items: list[Encoded], pad_id: int, question_end: bool = False) -> dict[str, torch.Tensor]:
    """:func:`collate` (right padding), plus ``question_end`` when the model reads the question's last token."""
    batch = collate(items, pad_id)
    if question_end:
        batch["question_end"] = question_ends(items)
    return batch


def question_ends(items: list[Encoded], padding_side: str = "right") -> torch.Tensor:
    """(b,) long: each item's question_end in a batch padded by :func:`collate` on ``padding_side``."""
    t = max(len(item.input_ids) for item in items)
    shift = [0 if padding_side == "right" else t - len(item.input_ids) for item in items]
    return torch.tensor([item.question_end + s for item, s in zip(items, shift)], dtype=torch.long)


def pad_id_of(tokenizer: Any) -> int:
    for token_id in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if token_id is not None:
            return token_id
    return 0
