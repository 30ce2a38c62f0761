"""Generation with a preference in the prompt, rendered exactly as in training."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from moslim.policy.data import build_rl_dataset, save_template
from moslim.policy.generate import generate_completions, policy_setting, render_prompts
from moslim.preferences import Preference, PromptTemplate


@pytest.fixture
def policy_dir(tmp_path, tiny_causal_lm_dir, objectives):
    """The tiny Llama saved like a trained policy: with objectives.yaml and a custom prompt template."""
    import shutil

    path = tmp_path / "policy"
    shutil.copytree(tiny_causal_lm_dir, path)
    objectives.to_yaml(path / "objectives.yaml")
    save_template(PromptTemplate(header="Targets:", line="* {name} -> {level}"), path / "prompt_template.yaml")
    return path


def test_generation_prompt_is_the_text_trl_trains_on(objectives, policy_dir):
    from moslim.data.schema import PromptRecord

    tokenizer = AutoTokenizer.from_pretrained(policy_dir)
    saved_objectives, template = policy_setting(policy_dir, None, None)
    assert saved_objectives == objectives and template.line == "* {name} -> {level}"
    row = build_rl_dataset([PromptRecord("q", "what is water ?")], objectives, template=template, seed=2)[0]
    trained_on = tokenizer.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
    rendered = render_prompts(tokenizer, ["what is water ?"], [Preference.parse(row["preference"])],
                              objectives, template)
    assert rendered == [trained_on]


@pytest.mark.parametrize("engine", ["fast", "stock"])
def test_same_seed_gives_the_same_answers_and_samples_have_the_asked_shape(policy_dir, engine):
    questions = ["what is water ?", "list three good things ."]
    kwargs = dict(max_new_tokens=6, num_samples=3, batch_size=1, progress=False, engine=engine)
    a = generate_completions(policy_dir, questions, "verbosity=1", seed=5, **kwargs)
    b = generate_completions(policy_dir, questions, "verbosity=1", seed=5, **kwargs)
    assert a == b
    assert len(a) == 2 and all(len(samples) == 3 for samples in a)


@pytest.mark.parametrize("engine", ["fast", "stock"])
def test_batching_does_not_change_greedy_answers(policy_dir, engine):
    questions = ["what is water ?", "explain why the cat is a good dog .", "how can i help you ?"]
    prefs = ["verbosity=0", "helpfulness=2,harmlessness=1", ""]
    one = generate_completions(policy_dir, questions, prefs, temperature=0, max_new_tokens=5, batch_size=1,
                               progress=False, engine=engine)
    three = generate_completions(policy_dir, questions, prefs, temperature=0, max_new_tokens=5, batch_size=3,
                                 progress=False, engine=engine)
    assert one == three


def test_old_engine_name_is_refused_with_the_new_one(policy_dir):
    with pytest.raises(ValueError, match="engine='hf' was renamed to 'stock'"):
        generate_completions(policy_dir, ["hi"], engine="hf", progress=False)


def test_base_model_without_objectives_needs_them_passed(tiny_causal_lm_dir, objectives):
    with pytest.raises(ValueError, match="pass the objectives"):
        generate_completions(tiny_causal_lm_dir, ["what is water ?"], "verbosity=1", max_new_tokens=2)
    out = generate_completions(tiny_causal_lm_dir, ["what is water ?"], "verbosity=1", objectives=objectives,
                               max_new_tokens=2, progress=False)
    assert len(out) == 1


def test_preference_count_must_match_questions(policy_dir):
    with pytest.raises(ValueError, match="2 questions but 3 preferences"):
        generate_completions(policy_dir, ["a", "b"], ["", "", ""], max_new_tokens=2)


def test_out_of_range_preference_is_rejected(policy_dir):
    with pytest.raises(ValueError, match="out of range"):
        generate_completions(policy_dir, ["a"], "verbosity=9", max_new_tokens=2)


def test_answer_prefix_opens_every_answer_and_both_engines_continue_it_alike(policy_dir):
    questions = ["what is water ?", "how can i help you ?"]
    prefixes = ["I'm sorry, but", "Water is"]
    kwargs = dict(temperature=0, max_new_tokens=4, progress=False)
    fast = generate_completions(policy_dir, questions, "verbosity=1", answer_prefix=prefixes, engine="fast", **kwargs)
    stock = generate_completions(policy_dir, questions, "verbosity=1", answer_prefix=prefixes, engine="stock",
                                 **kwargs)
    for prefix, got in zip(prefixes, stock):
        assert got[0].startswith(prefix)
    assert fast == stock  # greedy: both engines continue the same prefixed prompt the same way


def test_answer_prefix_count_must_match_questions(policy_dir):
    with pytest.raises(ValueError, match="2 questions but 3 answer prefixes"):
        generate_completions(policy_dir, ["a", "b"], "", answer_prefix=["x", "y", "z"], max_new_tokens=2)
