"""benchmarks/group_dilution.py: the reward's ranking of answers inside GRPO groups, against exact labels."""

from pathlib import Path

import numpy as np
import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "group_dilution.py"


@pytest.fixture(scope="module")
def module(load_script):
    return load_script(SCRIPT)


def test_pairs_are_inside_groups_and_ordered_by_the_true_reward(module):
    group = np.array([0, 0, 0, 1, 1])
    truth = np.array([-1.0, 0.0, 0.0, -2 / 3, -1 / 3])
    # Group 0: answer 1 and 2 tie (no pair), each beats answer 0; group 1: answer 4 beats 3. No pair across groups.
    assert sorted(module.pair_rows(group, truth)) == [(1, 0), (2, 0), (4, 3)]


def test_pairwise_accuracy_counts_ties_half_and_is_nan_without_pairs(module):
    pairs = [(1, 0), (2, 0), (4, 3)]
    assert module.pairwise_accuracy(np.array([0.0, 1.0, 0.0, 0.0, 1.0]), pairs) == pytest.approx((1 + 0.5 + 1) / 3)
    assert module.pairwise_accuracy(np.array([1.0, 0.0, 0.0, 1.0, 0.0]), pairs) == 0.0
    assert np.isnan(module.pairwise_accuracy(np.zeros(5), []))


def test_terms_are_each_objectives_mapped_reward_and_the_full_one_their_mean(module):
    from moslim.objectives import Objective, ObjectiveSet

    objectives = ObjectiveSet([Objective("verbosity", ("a", "b", "c", "d")), Objective("harmlessness", ("x", "y"))])
    probs = torch.zeros(2, 2, 4)
    probs[0, 0, 3] = probs[1, 0, 1] = 1.0  # verbosity: level 3, then level 1, both sure
    probs[:, 1, :2] = torch.tensor([[0.2, 0.8], [0.6, 0.4]])  # P(harmless) 0.8, then 0.4
    out = module.terms(probs, objectives, {"verbosity": [1, 1], "harmlessness": [1, 1]})
    # expected_level: -|E[level] - target| / (levels - 1)
    np.testing.assert_allclose(out["verbosity"], [-2 / 3, 0.0], atol=1e-6)
    np.testing.assert_allclose(out["harmlessness"], [-0.2, -0.6], atol=1e-6)
    np.testing.assert_allclose(out["full"], (out["verbosity"] + out["harmlessness"]) / 2, atol=1e-6)


def test_a_harmlessness_term_that_varies_against_length_dilutes_the_ranking(module):
    # Two groups of four; the verbosity term orders every pair right, the harmlessness term (which the judge says is
    # constant) rewards the longer answers by more than verbosity's steps, so the full reward gets pairs wrong.
    group = np.repeat([0, 1], 4)
    words = np.array([10, 30, 55, 90, 12, 28, 60, 95])
    truth = {"verbosity": np.array([0, -1, -2, -3, 0, -1, -2, -3]) / 3, "harmlessness": np.full(8, -1.0)}
    verbosity = truth["verbosity"] * 0.9
    harm = np.array([0, 0.5, 1.0, 1.5, 0, 0.5, 1.0, 1.5]) - 2
    rewards = {"good": {"verbosity": verbosity, "harmlessness": np.full(8, -0.5), "full": (verbosity - 0.5) / 2},
               "diluted": {"verbosity": verbosity, "harmlessness": harm, "full": (verbosity + harm) / 2}}
    out = module.summary(group, words, truth, rewards, num_resamples=50)
    assert out["verbosity_pairs"] == 12 and out["groups_judged_harmlessness_varies"] == 0
    good, diluted = out["models"]["good"], out["models"]["diluted"]
    assert good["pairwise_verbosity"]["value"] == good["pairwise_full"]["value"] == 1.0
    assert good["dilution"]["value"] == 0.0
    assert diluted["pairwise_verbosity"]["value"] == 1.0 and diluted["pairwise_full"]["value"] == 0.0
    assert diluted["dilution"]["value"] == 1.0 and diluted["dilution"]["ci"] == [1.0, 1.0]
    assert diluted["harmlessness_vs_words_within_group"] > 0.9
    assert diluted["pairwise_full_change_vs_first"]["value"] == -1.0
    assert diluted["sd"]["harmlessness"] > good["sd"]["harmlessness"] == 0.0
    assert np.isnan(good["harmlessness_vs_words_within_group"])  # a constant term has no correlation


def test_terms_follow_the_mapping_asked_for(module):
    from moslim.objectives import Objective, ObjectiveSet

    objectives = ObjectiveSet([Objective("verbosity", ("a", "b", "c", "d")), Objective("harmlessness", ("x", "y"))])
    probs = torch.tensor([[[0.1, 0.6, 0.2, 0.1], [0.3, 0.7, 0.0, 0.0]]])
    out = module.terms(probs, objectives, {"verbosity": [1], "harmlessness": [1]}, method="target_logprob")
    np.testing.assert_allclose(out["verbosity"], np.log([0.6]), rtol=1e-6)
    np.testing.assert_allclose(out["harmlessness"], np.log([0.7]), rtol=1e-6)
    np.testing.assert_allclose(out["full"], np.log([0.6 * 0.7]) / 2, rtol=1e-6)


def test_stored_groups_of_other_prompts_are_refused_before_any_model_loads(tmp_path):
    import json
    import subprocess
    import sys

    stored = {kind: {"rows": {"prompt": ["nowhere/1"], "requested": [0], "answer": ["Hi."]}}
              for kind in ("safe", "unsafe")}
    (tmp_path / "groups.json").write_text(json.dumps(stored))
    bad = subprocess.run([sys.executable, str(SCRIPT), "--answers", str(tmp_path / "groups.json"),
                          "--rm", str(tmp_path / "no-model")], capture_output=True, text=True)
    assert bad.returncode == 2 and "1 prompts are not the study's RL prompts, e.g. nowhere/1" in bad.stderr
    (tmp_path / "figures.json").write_text(json.dumps({"safe": {"models": {}}}))
    bad = subprocess.run([sys.executable, str(SCRIPT), "--answers", str(tmp_path / "figures.json")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "no stored safe groups (write them with --json)" in bad.stderr


def test_group_sd_is_the_mean_of_each_groups_own_spread(module):
    group = np.array([0, 0, 1, 1, 1])
    values = np.array([1.0, 3.0, 5.0, 5.0, 5.0])  # group 0 spreads by 1 around 2; group 1 not at all
    assert module.group_sd(values, group) == pytest.approx(0.5)
    # A shift shared by a whole group changes nothing: only the spread inside groups counts.
    assert module.group_sd(values + 10 * group, group) == pytest.approx(0.5)
