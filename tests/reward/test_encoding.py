"""(question, answer) -> tokens: formats, system turns dropped, truncation keeps the answer's end."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moslim.reward.encoding import PairEncoder, collate, truncate_pair


def test_chat_format_renders_question_and_answer_with_the_template(tiny_tokenizer):
    encoder = PairEncoder(tiny_tokenizer, "chat", max_length=64)
    ids = encoder.encode("what is the capital ?", "paris").input_ids
    text = tiny_tokenizer.decode(ids)
    expected = "<|im_start|> user what is the capital ? <|im_end|> <|im_start|> assistant paris <|im_end|>"
    assert text.split() == expected.split()


def test_system_turns_never_reach_the_reward_model(tiny_tokenizer):
    encoder = PairEncoder(tiny_tokenizer, "chat", max_length=64)
    chat = [{"role": "system", "content": "level verbosity : four"}, {"role": "user", "content": "what is water ?"}]
    assert encoder.encode(chat, "water").input_ids == encoder.encode("what is water ?", "water").input_ids


def test_pair_format_uses_cls_sep_and_token_types(tiny_tokenizer):
    encoded = PairEncoder(tiny_tokenizer, "pair", max_length=64).encode("what is water ?", "good water")
    assert tiny_tokenizer.convert_ids_to_tokens(encoded.input_ids) == \
        ["[CLS]", "what", "is", "water", "?", "[SEP]", "good", "water", "[SEP]"]
    assert encoded.token_type_ids == [0] * 6 + [1] * 3


def test_plain_format_ends_with_eos(tiny_tokenizer):
    ids = PairEncoder(tiny_tokenizer, "plain", max_length=64).encode("why ?", "yes").input_ids
    assert ids[-1] == tiny_tokenizer.eos_token_id


def test_truncation_keeps_the_question_start_and_the_answer_end():
    question, answer = list(range(100, 110)), list(range(200, 240))
    q, a = truncate_pair(question, answer, budget=20)
    # expected: the answer alone overflows, so the question gets budget // 4 = 5 tokens
    assert q == [100, 101, 102, 103, 104] and a == list(range(225, 240))
    q, a = truncate_pair(list(range(10)), list(range(100, 105)), budget=12)
    assert q == list(range(7)) and a == list(range(100, 105))  # a short answer stays whole


@given(st.integers(0, 60), st.integers(0, 60), st.integers(4, 50))
def test_truncation_never_exceeds_the_budget(nq, na, budget):
    q, a = truncate_pair(list(range(nq)), list(range(na)), budget)
    assert len(q) + len(a) == min(nq + na, budget)
    assert q == list(range(len(q)))  # the question's start
    assert a == list(range(na - len(a), na))  # the answer's end


def test_encoded_length_never_exceeds_max_length(tiny_tokenizer):
    encoder = PairEncoder(tiny_tokenizer, "chat", max_length=16)
    ids = encoder.encode("what is the capital of france ? " * 5, "the answer is paris . " * 10).input_ids
    assert len(ids) == 16
    assert tiny_tokenizer.decode(ids).split()[-3:] == ["paris", ".", "<|im_end|>"]


def test_max_length_too_small_for_the_format_is_a_clear_error(tiny_tokenizer):
    with pytest.raises(ValueError, match="max_length 3 leaves no room"):
        PairEncoder(tiny_tokenizer, "chat", max_length=3)


def test_collate_pads_right_or_left():
    from moslim.reward.encoding import Encoded

    batch = collate([Encoded([5, 6, 7]), Encoded([8])], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    left = collate([Encoded([5, 6, 7]), Encoded([8])], pad_id=0, padding_side="left")
    assert left["input_ids"].tolist() == [[5, 6, 7], [0, 0, 8]]
