"""benchmarks/rm_on_policy_answers.py: exact labels of stored policy answers and reward models compared on them."""

import json
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "rm_on_policy_answers.py"


@pytest.fixture(scope="module")
def module(load_script):
    return load_script(SCRIPT)


def demo_prompt_ids(n: int) -> list[str]:
    from moslim.policy.data import read_prompt_records

    return [r.id for r in read_prompt_records("moslim:assets/demo/prompts_train.jsonl")[:n]]


def write_arm(path: Path, prompts: list[str], answers: list[str], refused: list[int], safety: list[str]) -> Path:
    path.write_text(json.dumps({"after": {"harmlessness": {"rows": {
        "prompt": prompts, "requested": [1] * len(prompts), "safety": safety, "refused": refused,
        "answer": answers}}}}))
    return path


def test_exact_labels_word_count_refusal_and_harm(module, demo_labelling):
    answers = {"answer": ["Short.", " ".join(["word"] * 30), " ".join(["word"] * 50), " ".join(["word"] * 90)],
               "refused": [1, 0, 0, 1], "safety": ["unsafe", "unsafe", "safe", "safe"]}
    labels = module.truth(answers, demo_labelling)
    assert labels["verbosity"].tolist() == [0, 1, 2, 3]
    assert labels["refusal"].tolist() == [1, 0, 0, 1]
    assert labels["harmlessness"].tolist() == [1, 0, 1, 1]  # only answering an unsafe request is harmful


def test_figures_give_accuracy_macro_f1_and_per_level_accuracy(module):
    out = module.figures(np.array([0, 1, 1, 3]), np.array([0, 1, 2, 3]), 4)
    assert out["accuracy"] == 0.75 and out["n"] == 4
    assert out["by_true_level"] == {"0": 1.0, "1": 1.0, "2": 0.0, "3": 1.0}
    assert module.figures(np.array([0, 3]), np.array([1, 1]), 4)["within_one_level"] == 0.5
    assert out["macro_f1"] == pytest.approx((1 + 2 / 3 + 0 + 1) / 4)
    assert "by_true_level" not in module.figures(np.array([0, 1]), np.array([1, 1]), 2)


def test_a_better_model_shows_a_positive_paired_change(module, demo_labelling, tmp_path, monkeypatch):
    ids = demo_prompt_ids(20)
    words = [5, 30, 50, 90] * 5
    answers = module.read_answers([write_arm(tmp_path / "a.json", ids, [" ".join(["w"] * n) for n in words],
                                             [0] * 20, ["safe"] * 20)])
    exact = module.truth(answers, demo_labelling)["verbosity"]
    off_by_one = np.where(np.arange(20) % 2 == 0, exact, np.minimum(exact + 1, 3))

    def fake_predictions(path, questions, texts):  # the two "models": exact, and wrong on every second answer
        assert len(questions) == len(texts) == 20 and questions[0]  # the prompts' texts, looked up by id
        verbosity = exact if path == "good" else off_by_one
        return {"verbosity": verbosity, "harmlessness": np.ones(20, dtype=int)}

    monkeypatch.setattr(module, "predictions", fake_predictions)
    out = module.compare(["bad", "good"], answers, demo_labelling, 4, num_resamples=200)
    bad, good = out["models"]["bad"], out["models"]["good"]
    assert good["verbosity"]["accuracy"] == 1.0
    assert bad["verbosity"]["accuracy"] == pytest.approx(np.mean(off_by_one == exact))
    change = good["accuracy_change_vs_first"]["verbosity"]
    assert change["value"] == pytest.approx(1.0 - bad["verbosity"]["accuracy"])
    assert 0 < change["ci"][0] <= change["value"] <= change["ci"][1]
    assert good["accuracy_change_vs_first"]["harmlessness"] == {"value": 0.0, "ci": [0.0, 0.0]}
    assert "accuracy_change_vs_first" not in bad


def test_arms_without_stored_answers_or_prompts_outside_the_demo_are_refused(module, demo_labelling, tmp_path):
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"after": {"rows": {}}}))
    with pytest.raises(ValueError, match="no stored harmlessness answers"):
        module.read_answers([empty])
    answers = module.read_answers([write_arm(tmp_path / "x.json", ["nowhere/1"], ["a"], [0], ["safe"])])
    with pytest.raises(ValueError, match="not in the demo's training prompts"):
        module.compare(["rm"], answers, demo_labelling, 4)
