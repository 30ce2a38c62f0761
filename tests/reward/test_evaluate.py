"""Evaluation metrics against hand-computed numbers, and the saved outputs."""

from __future__ import annotations

import json
import math

import pytest
import torch

from moslim.data.schema import PreferencePair
from moslim.objectives import Objective, ObjectiveSet
from moslim.reward.evaluate import (
    confusion_matrix,
    expected_calibration_error,
    head_metrics,
    macro_f1,
    pairwise_accuracy,
)
from moslim.reward.losses import IGNORE

TWO = ObjectiveSet([Objective("a", ("x", "y", "z")), Objective("b", ("no", "yes"))])


def test_confusion_matrix_rows_are_labels_columns_predictions():
    confusion = confusion_matrix(torch.tensor([0, 2, 2, 1]), torch.tensor([0, 1, 2, 1]), 3)
    assert confusion.tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]


def test_macro_f1_matches_hand_computation():
    confusion = torch.tensor([[1, 0, 0], [0, 1, 1], [0, 0, 1]])
    # F1 per level: 1, 2*1/(2+1) = 2/3, 2*1/(1+2) = 2/3 -> mean 7/9
    assert math.isclose(macro_f1(confusion), 7 / 9)


def test_ece_matches_hand_computation():
    probs = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.3, 0.7]], dtype=torch.double)
    labels = torch.tensor([0, 1, 1, 0])
    # bins: (0.8, 0.9] holds 2 rows, confidence .9, accuracy .5; (0.5, 0.6] one row conf .6 acc 1;
    # (0.6, 0.7] one row conf .7 acc 0 -> 0.5*0.4 + 0.25*0.4 + 0.25*0.7 = 0.475
    assert math.isclose(expected_calibration_error(probs, labels), 0.475, rel_tol=1e-9)


def test_head_metrics_skip_unlabelled_rows_and_ignore_padded_classes():
    probs = torch.tensor([
        [[0.7, 0.2, 0.1], [0.2, 0.8, 0.0]],
        [[0.1, 0.1, 0.8], [0.6, 0.4, 0.0]],
        [[0.1, 0.8, 0.1], [0.5, 0.5, 0.0]],
    ])
    labels = torch.tensor([[0, 1], [1, IGNORE], [1, 0]])
    metrics = head_metrics(probs, labels, TWO)
    assert metrics["a"]["n"] == 3 and metrics["b"]["n"] == 2
    assert math.isclose(metrics["a"]["accuracy"], 2 / 3) and metrics["a"]["within_one"] == 1.0
    assert metrics["b"]["accuracy"] == 1.0  # ties break to the lower level: row 3 predicts 0
    assert metrics["a"]["confusion"] == [[1, 0, 0], [0, 1, 1], [0, 0, 0]]
    assert metrics["b"]["spearman"] == pytest.approx(1.0)


def test_pairwise_accuracy_compares_expected_levels_with_ties_half():
    pairs = [PreferencePair(str(i), "q", "c", "r", "b") for i in range(3)]
    chosen = torch.tensor([[[1, 0, 0], [0.2, 0.8, 0]]] * 3)
    rejected = torch.tensor([[[0, 0, 1], [0.9, 0.1, 0]], [[0, 0, 1], [0.1, 0.9, 0]], [[0, 0, 1], [0.2, 0.8, 0]]])
    result = pairwise_accuracy(chosen, rejected, pairs, TWO)
    assert result == {"b": {"n": 3, "accuracy": 0.5}}  # win, loss, tie -> (1 + 0 + 0.5) / 3


def test_evaluate_reward_model_writes_json_and_confusion_pngs(tiny_causal_lm_dir, objectives, rm_data, tmp_path,
                                                            tiny_tokenizer):
    from moslim.reward.evaluate import evaluate_reward_model
    from moslim.reward.model import MultiHeadRewardModel

    model = MultiHeadRewardModel.from_backbone(tiny_causal_lm_dir, objectives)
    model.save_pretrained(tmp_path / "rm")
    tiny_tokenizer.save_pretrained(tmp_path / "rm")
    results = evaluate_reward_model(tmp_path / "rm", rm_data["eval"], rm_data["pairs"], tmp_path / "out",
                                    max_length=64)
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["heads"]["verbosity"]["n"] == 12 and saved["pairs"]["harmlessness"]["n"] == 4
    assert results["heads"]["verbosity"]["accuracy"] == saved["heads"]["verbosity"]["accuracy"]
    assert {p.name for p in (tmp_path / "out").glob("confusion_*.png")} == \
        {"confusion_helpfulness.png", "confusion_verbosity.png", "confusion_harmlessness.png"}


def test_subsample_is_seeded_keeps_file_order_and_reaches_every_part():
    from moslim.reward.data import subsample

    items = list(range(100))
    a, b = subsample(items, 10, seed=3), subsample(items, 10, seed=3)
    assert a == b == sorted(a) and len(a) == 10
    assert any(x >= 50 for x in a) and any(x < 50 for x in a)
    assert subsample(items, None) == items and subsample(items, 200) == items
