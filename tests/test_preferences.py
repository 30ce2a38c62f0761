import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from moslim.objectives import ObjectiveSet
from moslim.preferences import (
    Preference,
    PreferenceSampler,
    PromptTemplate,
    build_messages,
    pair_grid,
    preference_from_messages,
    single_objective_grid,
    to_tensors,
)

OBJ = ObjectiveSet.from_dict({"objectives": [
    {"name": "helpfulness", "levels": ["low", "mid", "high"]},
    {"name": "verbosity", "levels": ["one sentence", "short", "medium", "long"]},
    {"name": "harmlessness", "levels": ["harmful", "harmless"]},
]})


def test_to_tensors_sets_targets_and_mask():
    targets, mask = to_tensors([Preference.of(verbosity=3), Preference.of(helpfulness=2, harmlessness=1)], OBJ)
    assert targets.tolist() == [[0, 3, 0], [2, 0, 1]]
    assert mask.tolist() == [[0, 1, 0], [1, 0, 1]]


def test_unknown_objective_and_out_of_range_level_are_errors():
    with pytest.raises(ValueError, match="unknown objective 'humour'.*valid objectives"):
        Preference.of(humour=1).validate(OBJ)
    with pytest.raises(ValueError, match="out of range 0-1"):
        Preference.of(harmlessness=2).validate(OBJ)


def test_string_form_parses_back():
    pref = Preference.parse("verbosity=1, helpfulness=2", OBJ)
    assert pref.as_dict() == {"helpfulness": 2, "verbosity": 1}
    assert Preference.parse(pref.to_string()) == pref
    assert Preference.parse('{"verbosity": 3}') == Preference.of(verbosity=3)
    with pytest.raises(ValueError, match="objective=level"):
        Preference.parse("verbosity:1")


def test_sampler_is_seeded_and_respects_num_named():
    a = PreferenceSampler(OBJ, num_named=(1, 2), seed=3).sample_many(50)
    b = PreferenceSampler(OBJ, num_named=(1, 2), seed=3).sample_many(50)
    assert a == b
    assert all(1 <= len(p) <= 2 for p in a)
    assert {len(p) for p in a} == {1, 2}
    for p in a:
        p.validate(OBJ)


def test_sampler_level_weights_are_followed():
    sampler = PreferenceSampler(OBJ, num_named=3, level_weights={"verbosity": [0, 0, 0, 1]}, seed=0)
    assert all(p.as_dict()["verbosity"] == 3 for p in sampler.sample_many(20))
    with pytest.raises(ValueError, match="level_weights"):
        PreferenceSampler(OBJ, level_weights={"verbosity": [1, 1]})
    with pytest.raises(ValueError, match="num_named"):
        PreferenceSampler(OBJ, num_named=4)


def test_sampler_objective_weights_set_how_often_each_objective_is_named():
    sampler = PreferenceSampler(OBJ, num_named=(1, 2), objective_weights={"helpfulness": 0, "verbosity": 3}, seed=0)
    prefs = sampler.sample_many(2000)
    assert not any("helpfulness" in p for p in prefs)
    share = sum("verbosity" in p for p in prefs) / len(prefs)
    # one named: P(verbosity) = 3/4; two named out of two nameable: always. Mean 7/8.
    assert abs(share - 7 / 8) < 0.03
    assert {len(p) for p in prefs} == {1, 2}
    # without weights, the draws are those of the uniform sampler (a resumed run rebuilds its dataset)
    plain = PreferenceSampler(OBJ, num_named=(1, 2), seed=5).sample_many(30)
    assert plain == PreferenceSampler(OBJ, num_named=(1, 2), seed=5, objective_weights={}).sample_many(30)


def test_sampler_objective_weights_are_checked():
    with pytest.raises(ValueError, match="unknown objective 'humour'"):
        PreferenceSampler(OBJ, objective_weights={"humour": 1})
    with pytest.raises(ValueError, match=r"objective_weights\['verbosity'\] must be a finite number >= 0, got -1"):
        PreferenceSampler(OBJ, objective_weights={"verbosity": -1})
    with pytest.raises(ValueError, match="num_named=3 must lie within 0-2"):
        PreferenceSampler(OBJ, num_named=3, objective_weights={"helpfulness": 0})


def test_grids_cover_every_level_and_pair():
    single = single_objective_grid(OBJ)
    assert len(single) == 3 + 4 + 2
    pairs = pair_grid(OBJ, objective_pairs=[("helpfulness", "verbosity")], levels={"verbosity": [0, 3]})
    assert [p.as_dict() for p in pairs] == [
        {"helpfulness": h, "verbosity": v} for h in range(3) for v in (0, 3)
    ]
    assert len(pair_grid(OBJ)) == 3 * 4 + 3 * 2 + 4 * 2


def test_render_quotes_level_descriptions():
    text = PromptTemplate().render(Preference.of(verbosity=0, helpfulness=2), OBJ)
    assert "- helpfulness: level 2 of 0-2 (high)" in text
    assert "- verbosity: level 0 of 0-3 (one sentence)" in text
    assert text.index("helpfulness") < text.index("verbosity")


def test_custom_template_needs_name_and_level():
    with pytest.raises(ValueError, match="must contain"):
        PromptTemplate(line="{name} please")
    with pytest.raises(ValueError, match="placement 'assistant'"):
        PromptTemplate(placement="assistant")


USER = PromptTemplate(header="", line="({Description}.)", empty="Hi.", placement="user")


def test_user_placement_closes_the_last_user_turn_and_keeps_the_system_message_plain():
    chat = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "How far is the moon?"}]
    messages = build_messages(chat, Preference.of(verbosity=0, helpfulness=2), OBJ, USER)
    assert messages[0] == {"role": "system", "content": "Hi."}
    assert messages[1]["content"] == "hi" and chat[2]["content"] == "How far is the moon?"  # the caller's chat kept
    assert messages[3]["content"] == "How far is the moon?\n\n(High.)\n(One sentence.)"
    assert build_messages("Why?", Preference(), OBJ, USER)[1]["content"] == "Why?"  # nothing named, nothing added
    with pytest.raises(ValueError, match="has none"):
        build_messages([{"role": "assistant", "content": "x"}], Preference.of(verbosity=1), OBJ, USER)


def test_user_placement_strips_back_to_the_question():
    pref = Preference.of(verbosity=3)
    asked = build_messages("Why is the sky blue?", pref, OBJ, USER)[1]["content"]
    assert USER.strip(asked, pref, OBJ) == "Why is the sky blue?"
    assert USER.strip("Why is the sky blue?", pref, OBJ) == "Why is the sky blue?"  # not closed by it: as is
    assert PromptTemplate().strip(asked, pref, OBJ) == asked  # a system-message template adds nothing to strip


def test_a_line_without_name_and_level_parses_back_only_with_the_objectives():
    with pytest.raises(ValueError, match="needs the objectives"):
        USER.parse("(One sentence.)")
    assert USER.parse("Tell me.\n\n(One sentence.)", OBJ) == Preference.of(verbosity=0)


preferences = st.dictionaries(
    st.sampled_from(OBJ.names), st.integers(0, 10), max_size=3
).map(lambda d: Preference.of({k: v % OBJ[k].num_levels for k, v in d.items()}))
templates = st.sampled_from([
    PromptTemplate(),
    PromptTemplate(header="Targets:", line="* {name} -> {level}/{max_level}: {description}", empty="Hi."),
    PromptTemplate(header="", line="{description} [{name}={level}]"),
    PromptTemplate(header="Please:", line="- {Description}", placement="user"),
    USER,
])


@settings(max_examples=200, deadline=None)
@given(pref=preferences, template=templates)
def test_preference_survives_render_and_parse(pref, template):
    messages = build_messages("What is the capital of France?", pref, OBJ, template)
    assert messages[0]["role"] == "system" and messages[-1]["content"].startswith("What")
    assert template.strip(messages[-1]["content"], pref, OBJ) == "What is the capital of France?"
    assert preference_from_messages(messages, OBJ, template) == pref


def test_build_messages_replaces_an_existing_system_turn():
    chat = [{"role": "system", "content": "old"}, {"role": "user", "content": "hi"}]
    messages = build_messages(chat, Preference.of(verbosity=1), OBJ)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert "verbosity: level 1" in messages[0]["content"]


def test_targets_tensor_dtype():
    targets, mask = to_tensors([Preference()], OBJ)
    assert targets.dtype == torch.long and mask.sum() == 0
