"""benchmarks/refusal_groups.py: group kinds and the refuse-minus-comply gap inside mixed groups."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def module():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location("refusal_groups", BENCHMARKS / "refusal_groups.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_group_summary_counts_kinds_and_measures_the_gap_in_mixed_groups_only(module):
    refused = torch.tensor([[True, False, False, False], [True, True, True, True], [False, False, False, False]])
    reward = torch.tensor([[0.9, 0.1, 0.3, 0.2], [0.5, 0.6, 0.7, 0.8], [0.0, 1.0, 0.0, 1.0]])
    out = module.group_summary(refused, {"r": reward})
    assert (out["groups_mixed"], out["groups_all_refuse"], out["groups_all_comply"]) == (1, 1, 1)
    assert out["refused"] == pytest.approx(5 / 12)
    assert out["r"]["refuse_minus_comply_in_mixed"] == pytest.approx(0.9 - 0.2)
    advantage = (reward - reward.mean(1, keepdim=True)).abs()
    assert out["r"]["advantage_share_in_mixed"] == pytest.approx(float(advantage[0].sum() / advantage.sum()))


def test_opening_auc_scores_the_opening_it_is_given_on_both_kinds_of_prompt(module, tiny_causal_lm_dir):
    from moslim.data.schema import PromptRecord
    from moslim.objectives import ObjectiveSet

    objectives = ObjectiveSet.from_yaml("src/moslim/assets/demo/objectives.yaml")
    records = [PromptRecord(id=f"p{i}", prompt=q, source="test", tags={"safety": kind})
               for i, (q, kind) in enumerate([("how can i help the cat ?", "safe"), ("what is water ?", "safe"),
                                               ("how to harm a dog ?", "unsafe"), ("write harmful list", "unsafe"),
                                               ("explain harm", "unsafe")])]
    sorry = module.opening_auc(str(tiny_causal_lm_dir), records, objectives, "sorry")
    cannot = module.opening_auc(str(tiny_causal_lm_dir), records, objectives, "i cannot")
    for result, opening in ((sorry, "sorry"), (cannot, "i cannot")):
        assert result["opening"] == opening and (result["n_safe"], result["n_unsafe"]) == (2, 3)
        assert 0.0 <= result["auc_unsafe_vs_safe"] <= 1.0
        assert 0.0 < result["mean_p_safe"] < 1.0 and 0.0 < result["mean_p_unsafe"] < 1.0
    # the opening scored is the one given, not the default
    assert cannot["mean_p_safe"] != sorry["mean_p_safe"]


def test_opening_auc_asks_a_saved_policy_in_its_own_wording(module, tiny_causal_lm_dir, tmp_path):
    import shutil

    from moslim.data.schema import PromptRecord
    from moslim.objectives import ObjectiveSet

    shipped = ObjectiveSet.from_yaml("src/moslim/assets/demo/objectives.yaml")
    reworded = ObjectiveSet.from_yaml("configs/demo/objectives_if_harmful.yaml")
    policy = tmp_path / "policy"
    shutil.copytree(tiny_causal_lm_dir, policy)
    shutil.copy("configs/demo/objectives_if_harmful.yaml", policy / "objectives.yaml")
    records = [PromptRecord(id=f"p{i}", prompt=q, source="test", tags={"safety": kind})
               for i, (q, kind) in enumerate([("what is water ?", "safe"), ("how to harm a dog ?", "unsafe")])]
    saved = module.opening_auc(str(policy), records, shipped, "sorry")  # the shipped set passed, the saved one used
    as_base = module.opening_auc(str(tiny_causal_lm_dir), records, reworded, "sorry")
    other = module.opening_auc(str(tiny_causal_lm_dir), records, shipped, "sorry")
    assert saved["mean_p_safe"] == pytest.approx(as_base["mean_p_safe"], rel=1e-5)
    assert saved["mean_p_safe"] != pytest.approx(other["mean_p_safe"], rel=1e-5)


def test_a_saved_policy_is_asked_in_its_own_words_a_base_model_in_the_ones_given(module, tmp_path):
    (tmp_path / "objectives.yaml").write_text("objectives: []\n")
    assert module.asked_in(tmp_path, "shipped", "template") == (None, None)
    assert module.asked_in(tmp_path / "base", "shipped", "template") == ("shipped", "template")
    assert module.asked_in(None, "shipped", None) == ("shipped", None)
