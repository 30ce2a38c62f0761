"""benchmarks/rm_calibration.py: a head's mean probability of each level against that level's rate."""

from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "rm_calibration.py"


@pytest.fixture(scope="module")
def module(load_script):
    return load_script(SCRIPT)


def test_mean_probability_and_rate_per_level_over_labelled_rows_only(module):
    probs = torch.tensor([[[0.9, 0.1, 0.0], [0.2, 0.8, 0.0]],
                          [[0.5, 0.5, 0.0], [0.6, 0.4, 0.0]],
                          [[0.1, 0.3, 0.6], [0.3, 0.7, 0.0]]])
    labels = torch.tensor([[0, 1], [1, -100], [2, 0]])
    table = module.mean_vs_rate(probs, labels, ["three", "two"])
    three, two = table["three"], table["two"]
    assert [c for c, *_ in three] == [1, 2] and [c for c, *_ in two] == [1]
    assert three[0][1:] == pytest.approx((0.3, 1 / 3, 3))  # mean P(1) over 3 rows; one row of level 1
    assert three[1][1:] == pytest.approx((0.2, 1 / 3, 3))
    assert two[0][1:] == pytest.approx((0.75, 0.5, 2))  # the unlabelled middle row is left out


def test_a_head_without_labels_is_left_out(module):
    table = module.mean_vs_rate(torch.full((2, 1, 2), 0.5), torch.full((2, 1), -100), ["none"])
    assert table == {}
