"""The MOSLIM reward callable: mapping of known probs, plain inputs to the reward model, logged metrics."""

from __future__ import annotations

import math

import pytest
import torch

from moslim.policy.reward_fn import MoslimReward, objective_stats
from moslim.preferences import Preference, PromptTemplate, build_messages, to_tensors
from moslim.reward.mapping import map_rewards


class FixedScorer:
    """Returns the probs it was given and records what it was asked to score."""

    def __init__(self, objectives, probs):
        self.objectives = objectives
        self.probs = probs
        self.calls = []

    def score(self, prompts, responses):
        self.calls.append((list(prompts), list(responses)))
        return self.probs


def _probs(objectives, b, seed=0):
    """Random valid probs (b, k, c) with zeros on padded classes."""
    g = torch.Generator().manual_seed(seed)
    k, c = len(objectives), objectives.max_classes
    logits = torch.randn(b, k, c, generator=g)
    for i, obj in enumerate(objectives):
        logits[:, i, obj.num_levels:] = float("-inf")
    return logits.softmax(-1)


def _batch(objectives, prefs):
    prompts = [build_messages(f"question {i} ?", p, objectives) for i, p in enumerate(prefs)]
    completions = [[{"role": "assistant", "content": f"answer {i} ."}] for i in range(len(prefs))]
    return prompts, completions, [p.to_string() for p in prefs]


PREFS = [Preference.of(helpfulness=2), Preference.of(verbosity=0, harmlessness=1), Preference.of(),
         Preference.of(helpfulness=0, verbosity=3, harmlessness=0)]


@pytest.mark.parametrize("method,options", [("zscore", {}), ("zscore", {"normalize": "named"}),
                                            ("zscore", {"stats": "batch"}), ("expected_level", {}),
                                            ("target_logprob", {})])
def test_reward_for_known_probs_equals_the_mapping(objectives, method, options):
    probs = _probs(objectives, len(PREFS))
    reward = MoslimReward(FixedScorer(objectives, probs), objectives, method=method, mapping_options=options)
    prompts, completions, column = _batch(objectives, PREFS)
    got = reward(prompts=prompts, completions=completions, preference=column)
    targets, mask = to_tensors(PREFS, objectives)
    expected = map_rewards(probs, targets, mask, objectives.num_levels, method=method, **options)
    assert got == pytest.approx(expected.tolist(), abs=1e-6)


@pytest.mark.parametrize("method", ["expected_level", "target_logprob"])
def test_per_objective_rewards_are_each_named_objective_alone_and_score_once(objectives, method):
    probs = _probs(objectives, len(PREFS))
    scorer = FixedScorer(objectives, probs)
    reward = MoslimReward(scorer, objectives, method=method)
    prompts, completions, column = _batch(objectives, PREFS)
    functions = reward.per_objective()
    assert [f.__name__ for f in functions] == ["moslim_helpfulness", "moslim_verbosity", "moslim_harmlessness"]
    per = [f(prompts, completions, preference=column) for f in functions]
    combined = reward(prompts, completions, preference=column)
    assert len(scorer.calls) == 1  # the reward model ran once for the batch, whoever asked
    targets, mask = to_tensors(PREFS, objectives)
    for i, values in enumerate(per):
        named = mask[:, i] > 0
        assert [v is None for v in values] == (~named).tolist()
        only = torch.zeros_like(mask)
        only[:, i] = mask[:, i]
        alone = map_rewards(probs, targets, only, objectives.num_levels, method=method)
        assert [v for v in values if v is not None] == pytest.approx(alone[named].tolist(), abs=1e-6)
    for row in range(len(PREFS)):  # both methods average over the named objectives
        values = [p[row] for p in per if p[row] is not None]
        assert (sum(values) / len(values) if values else 0.0) == pytest.approx(combined[row], abs=1e-6)
    new_answers = [[{"role": "assistant", "content": "another answer"}] for _ in PREFS]
    functions[0](prompts, new_answers, preference=column)
    assert len(scorer.calls) == 2  # a new batch is scored again


def test_per_objective_names_an_unknown_objective(objectives):
    reward = MoslimReward(FixedScorer(objectives, _probs(objectives, 1)), objectives)
    with pytest.raises(ValueError, match="no objective"):
        reward.per_objective(["style"])


def test_zscore_reward_matches_hand_computed_value(objectives):
    # helpfulness probs [0.2, 0.5, 0.3], target 1: mean 1/3, population std sqrt(0.14/9) = 0.124722;
    # z = (0.5 - 1/3) / 0.124722 = 1.336306; divided by k = 3 heads -> 0.445435
    probs = torch.zeros(1, 3, 4)
    probs[0, 0, :3] = torch.tensor([0.2, 0.5, 0.3])
    probs[0, 1, :4] = 0.25
    probs[0, 2, :2] = 0.5
    reward = MoslimReward(FixedScorer(objectives, probs), objectives)
    prompts, completions, column = _batch(objectives, [Preference.of(helpfulness=1)])
    assert reward(prompts, completions, preference=column) == pytest.approx([0.445435], abs=1e-5)


def test_reward_model_gets_the_plain_question_and_answer_in_one_call(objectives):
    probs = _probs(objectives, len(PREFS))
    scorer = FixedScorer(objectives, probs)
    reward = MoslimReward(scorer, objectives)
    prompts, completions, column = _batch(objectives, PREFS)
    reward(prompts, completions, preference=column)
    assert len(scorer.calls) == 1
    questions, answers = scorer.calls[0]
    assert questions == [f"question {i} ?" for i in range(len(PREFS))]
    assert answers == [f"answer {i} ." for i in range(len(PREFS))]
    assert not any("level" in q for q in questions)  # the rendered preference never reaches the reward model


def test_logs_hit_rate_and_level_distance_per_named_objective(objectives):
    probs = torch.zeros(2, 3, 4)
    probs[:, 0, :3] = torch.tensor([[0.1, 0.2, 0.7], [0.6, 0.3, 0.1]])  # argmax 2 and 0
    probs[:, 1, :4] = 0.25
    probs[:, 2, :2] = torch.tensor([[0.5, 0.5], [0.5, 0.5]])
    prefs = [Preference.of(helpfulness=2), Preference.of(helpfulness=2, verbosity=1)]
    logged = {}
    reward = MoslimReward(FixedScorer(objectives, probs), objectives)
    prompts, completions, column = _batch(objectives, prefs)
    reward(prompts, completions, preference=column, log_metric=logged.__setitem__)
    # helpfulness: hits 1 of 2; E[level] = 1.6 and 0.5 -> |.-2| = 0.4 and 1.5 -> mean 0.95
    assert logged["moslim/helpfulness/hit_rate"] == pytest.approx(0.5)
    assert logged["moslim/helpfulness/level_distance"] == pytest.approx(0.95)
    # verbosity (one row, target 1): uniform -> argmax 0 misses; E[level] = 1.5 -> 0.5
    assert logged["moslim/verbosity/hit_rate"] == 0.0
    assert logged["moslim/verbosity/level_distance"] == pytest.approx(0.5)
    assert not any(k.startswith("moslim/harmlessness") for k in logged)  # nobody named it


def test_objective_stats_ignore_padded_classes(objectives):
    probs = torch.zeros(1, 3, 4)
    probs[0, 2, :2] = torch.tensor([0.3, 0.7])
    targets = torch.tensor([[0, 0, 1]])
    mask = torch.tensor([[0.0, 0.0, 1.0]])
    hit, distance, count = objective_stats(probs, targets, mask, objectives.num_levels)
    assert hit[2] == 1.0 and distance[2] == pytest.approx(0.3) and count.tolist() == [0, 0, 1]
    assert math.isnan(hit[0].item())


def test_missing_preference_column_is_a_clear_error(objectives):
    reward = MoslimReward(FixedScorer(objectives, _probs(objectives, 1)), objectives)
    with pytest.raises(ValueError, match="needs the dataset column 'preference'"):
        reward(["q"], ["a"], other=["x"])


def test_bad_preference_names_the_row(objectives):
    reward = MoslimReward(FixedScorer(objectives, _probs(objectives, 2)), objectives)
    with pytest.raises(ValueError, match=r"row 1: .*verbosity.*out of range 0-3"):
        reward(["q", "q"], ["a", "b"], preference=["helpfulness=1", "verbosity=9"])


def test_objective_mismatch_with_the_reward_model_is_rejected(objectives):
    from moslim.objectives import ObjectiveSet

    other = ObjectiveSet.from_dict({"objectives": [{"name": "tone", "levels": ["flat", "warm"]}]})
    with pytest.raises(ValueError, match="scores objectives"):
        MoslimReward(FixedScorer(objectives, None), other)


def test_running_stats_are_created_and_updated(objectives):
    probs = _probs(objectives, 4)
    reward = MoslimReward(FixedScorer(objectives, probs), objectives, mapping_options={"stats": "running"})
    prompts, completions, column = _batch(objectives, PREFS)
    reward(prompts, completions, preference=column)
    # helpfulness is named by rows 0 and 3 -> two values seen
    assert reward.mapping_options["running"].count[0].item() == 2


def test_the_reward_model_reads_the_question_without_a_preference_that_closes_it(objectives):
    template = PromptTemplate(header="", line="({Description}.)", placement="user")
    probs = _probs(objectives, len(PREFS))
    scorer = FixedScorer(objectives, probs)
    prompts = [build_messages(f"question {i} ?", p, objectives, template) for i, p in enumerate(PREFS)]
    assert prompts[1][1]["content"] != "question 1 ?"  # the preference closes the user's turn
    _, completions, column = _batch(objectives, PREFS)
    got = MoslimReward(scorer, objectives, template=template)(prompts, completions, preference=column)
    assert scorer.calls == [([f"question {i} ?" for i in range(4)], [f"answer {i} ." for i in range(4)])]
    targets, mask = to_tensors(PREFS, objectives)
    assert got == pytest.approx(map_rewards(probs, targets, mask, objectives.num_levels).tolist(), abs=1e-6)


def test_reward_with_a_real_tiny_reward_model_equals_mapping_of_its_probs(objectives, tiny_scorer):
    prefs = PREFS
    prompts, completions, column = _batch(objectives, prefs)
    reward = MoslimReward(tiny_scorer, template=PromptTemplate())
    got = reward(prompts, completions, preference=column)
    probs = tiny_scorer.score([f"question {i} ?" for i in range(4)], [f"answer {i} ." for i in range(4)])
    targets, mask = to_tensors(prefs, objectives)
    expected = map_rewards(probs, targets, mask, objectives.num_levels)
    assert got == pytest.approx(expected.tolist(), abs=1e-6)
    assert got[2] == 0.0  # nothing named -> reward 0
