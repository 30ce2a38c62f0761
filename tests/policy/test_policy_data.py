"""The RL prompt dataset: seeded preferences rendered into the prompt and parsed back."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moslim.data.schema import PromptRecord
from moslim.policy.data import build_rl_dataset, load_template, read_prompt_records, save_template
from moslim.preferences import Preference, PromptTemplate, build_messages, preference_from_messages


def _lines(text: str, tokenizer) -> str:
    # The chat template closes a turn with a special token on the same line as the last preference line.
    return text.replace(tokenizer.eos_token, "\n")


def test_preference_survives_the_round_trip_into_the_prompt_and_back(objectives, prompts_file, tiny_tokenizer):
    records = read_prompt_records(prompts_file)
    data = build_rl_dataset(records, objectives, num_named=(0, 3), preferences_per_prompt=3, seed=1)
    assert len(data) == 3 * len(records)
    template = PromptTemplate()
    for row in data:
        stored = Preference.parse(row["preference"], objectives)
        assert preference_from_messages(row["prompt"], objectives) == stored
        # and through the policy's chat template, the text the policy actually reads
        text = tiny_tokenizer.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
        assert template.parse(_lines(text, tiny_tokenizer), objectives) == stored
        assert row["prompt"][-1] == {"role": "user", "content": row["question"]}


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_any_preference_round_trips_through_the_chat_template(objectives, tiny_tokenizer, data):
    targets = {}
    for obj in objectives:
        if data.draw(st.booleans()):
            targets[obj.name] = data.draw(st.integers(0, obj.num_levels - 1))
    pref = Preference.of(targets)
    messages = build_messages("what is water ?", pref, objectives)
    text = tiny_tokenizer.apply_chat_template(messages, tokenize=False)
    assert PromptTemplate().parse(_lines(text, tiny_tokenizer), objectives) == pref


def test_the_same_seed_rebuilds_the_same_dataset(objectives, prompts_file):
    records = read_prompt_records(prompts_file)
    a = build_rl_dataset(records, objectives, seed=3)["preference"]
    b = build_rl_dataset(records, objectives, seed=3)["preference"]
    c = build_rl_dataset(records, objectives, seed=4)["preference"]
    assert a == b and a != c


def test_num_named_bounds_the_objectives_each_preference_names(objectives, prompts_file):
    records = read_prompt_records(prompts_file)
    data = build_rl_dataset(records, objectives, num_named=(2, 2), preferences_per_prompt=4)
    assert {len(Preference.parse(p)) for p in data["preference"]} == {2}


def test_level_weights_keep_a_zero_weight_level_out_of_training(objectives, prompts_file):
    records = read_prompt_records(prompts_file)
    data = build_rl_dataset(records, objectives, num_named=(3, 3), preferences_per_prompt=8,
                            level_weights={"harmlessness": [0, 1]})
    assert {Preference.parse(p).as_dict()["harmlessness"] for p in data["preference"]} == {1}


def test_chat_prompts_keep_their_turns_and_lose_their_own_system_message(objectives):
    chat = [{"role": "system", "content": "be terse"}, {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"}, {"role": "user", "content": "what is water ?"}]
    data = build_rl_dataset([PromptRecord("c", chat)], objectives, num_named=(1, 1))
    prompt = data[0]["prompt"]
    assert [m["role"] for m in prompt] == ["system", "user", "assistant", "user"]
    assert "be terse" not in prompt[0]["content"]


def test_a_custom_template_round_trips_through_yaml(tmp_path, objectives):
    template = PromptTemplate(header="Targets:", line="* {name} -> {level}", empty="No targets.")
    save_template(template, tmp_path / "t.yaml")
    loaded = load_template(tmp_path / "t.yaml")
    assert loaded == template
    pref = Preference.of(verbosity=2)
    assert loaded.parse(loaded.render(pref, objectives), objectives) == pref


def test_a_user_placed_template_round_trips_through_yaml_and_a_bad_one_names_its_file(tmp_path, objectives):
    template = PromptTemplate(header="", line="({Description}.)", placement="user")
    save_template(template, tmp_path / "t.yaml")
    assert load_template(tmp_path / "t.yaml") == template
    (tmp_path / "bad.yaml").write_text("line: '({Description}.)'\nplacement: footer\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.yaml: prompt template placement 'footer'"):
        load_template(tmp_path / "bad.yaml")
    data = build_rl_dataset([PromptRecord("q", "Why?")], objectives, num_named=(1, 1), template=template)
    assert data[0]["prompt"][-1]["content"].startswith("Why?\n\n(")
    assert load_template("configs/demo/prompt_user.yaml").placement == "user"


def test_bad_prompt_file_line_is_reported_with_its_location(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "a", "prompt": "fine"}\n{"id": "b"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.jsonl:2"):
        read_prompt_records(path)


def test_a_contrast_names_the_same_objectives_at_every_level_once(objectives):
    from moslim.preferences import PreferenceSampler

    sampler = PreferenceSampler(objectives, num_named=(1, 3), level_weights={"harmlessness": [0, 1]}, seed=5)
    for _ in range(50):
        group = sampler.sample_contrast(4)
        named = {tuple(sorted(p.as_dict())) for p in group}
        assert len(group) == 4 and len(named) == 1
        for name in next(iter(named)):
            levels = [p.as_dict()[name] for p in group]
            allowed = [1] if name == "harmlessness" else list(range(objectives[name].num_levels))
            # every allowed level once, repeated in the same order past the level count
            assert sorted(levels[: len(allowed)]) == allowed if len(allowed) <= 4 else len(set(levels)) == 4
            assert all(levels[j] == levels[j % len(allowed)] for j in range(4))
    with pytest.raises(ValueError, match="k must be >= 1"):
        sampler.sample_contrast(0)


def test_level_contrast_keeps_a_prompts_rows_together_in_a_seeded_prompt_order(objectives, prompts_file):
    records = read_prompt_records(prompts_file)
    assert len(records) >= 3
    data = build_rl_dataset(records, objectives, num_named=(1, 1), preferences_per_prompt=2, seed=2,
                            objective_weights={"helpfulness": 0, "harmlessness": 0}, level_contrast=True)
    ids = data["id"]
    blocks = [ids[i: i + 2] for i in range(0, len(ids), 2)]
    assert all(a == b for a, b in blocks) and sorted(b[0] for b in blocks) == sorted(r.id for r in records)
    for i in range(0, len(ids), 2):  # verbosity alone, at two different levels of the same question
        levels = {Preference.parse(p).as_dict()["verbosity"] for p in data["preference"][i: i + 2]}
        assert len(levels) == 2
    again = build_rl_dataset(records, objectives, num_named=(1, 1), preferences_per_prompt=2, seed=2,
                             objective_weights={"helpfulness": 0, "harmlessness": 0}, level_contrast=True)
    assert again["preference"] == data["preference"] and again["id"] == ids
