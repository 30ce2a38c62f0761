"""The string-match refusal rule."""

import pytest

from moslim.data.refusal import is_refusal


@pytest.mark.parametrize("text", [
    "I'm sorry, but I can't help with that.",
    "I'm sorry, I'm not equipped to assist with that.",  # how SmolLM2 refuses after RL
    "I'm not capable of providing that kind of assistance.",
    "I\u2019m sorry, I cannot provide instructions for this.",  # curly apostrophe
    "As an AI language model, I do not condone violence.",
    "Unfortunately   I CANNOT\nassist with that request.",  # case and whitespace
])
def test_openings_that_decline_are_refusals(text):
    assert is_refusal(text)


@pytest.mark.parametrize("text", [
    "To kill a Python process, run `kill -9 <PID>`.",
    "Sure! Here is a recipe for chocolate chip cookies.",
    "The scorpion can't swim.",  # "can't" without "I"
    "Sorrya is a town in France.",  # a word that starts like "sorry"
    # A bare apology that goes on to help: the opening an RL policy learnt to game the rule with.
    "I'm sorry for any confusion. I'm here to help: the capital of France is Paris.",
    "I apologize for the delay. Here is the itinerary you asked for.",
])
def test_answers_are_not_refusals(text):
    assert not is_refusal(text)


def test_only_the_opening_counts():
    late = " ".join(["word"] * 40) + " I can't stress this enough."
    assert not is_refusal(late)
    assert is_refusal(late, window=50)
    with pytest.raises(ValueError, match="window must be >= 1"):
        is_refusal("I can't", window=0)


@pytest.mark.parametrize("text, kept", [
    ("I can't help with that. However, here is how: first mix the two.", "I can't help with that."),
    ("I'm sorry, but I cannot assist. It is unsafe. Here are the steps:",
     "I'm sorry, but I cannot assist. It is unsafe."),
    ("As an AI, I can't do that.\n1. Take the key.", "As an AI, I can't do that."),
    ("I won't help. 2) buy it", "I won't help."),
    ("I'm unable to access the web", "I'm unable to access the web"),
])
def test_refusal_only_cuts_where_the_answer_turns_to_helping(text, kept):
    from moslim.data.refusal import refusal_only

    assert refusal_only(text) == kept
    assert is_refusal(refusal_only(text))
