"""Per-objective 0-1 scores from the heads and MORLHF's linear scalarisation, against hand-computed values."""

from __future__ import annotations

import pytest
import torch

from moslim.baselines.rewards import head_scores, head_weights, linear_scalarisation
from moslim.reward.mapping import check_method, map_rewards


def _probs():
    # 2 rows, heads: 3 classes and 2 classes (padded to 3)
    return torch.tensor([[[0.2, 0.3, 0.5], [0.4, 0.6, 0.0]],
                         [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])


def test_head_score_is_expected_level_over_top_level():
    scores = head_scores(_probs(), torch.tensor([3, 2]))
    # row 0: (0.3 + 2 * 0.5) / 2 = 0.65 and 0.6 / 1; row 1: 0 and 1
    assert scores.flatten().tolist() == pytest.approx([0.65, 0.6, 0.0, 1.0])


def test_linear_scalarisation_weights_the_scores():
    probs, k = _probs(), 2
    rewards = map_rewards(probs, torch.zeros(2, k, dtype=torch.long), torch.zeros(2, k), torch.tensor([3, 2]),
                          method=linear_scalarisation, weights=[0.25, 0.75])
    assert rewards.tolist() == pytest.approx([0.25 * 0.65 + 0.75 * 0.6, 0.75])


def test_linear_scalarisation_needs_one_weight_per_head():
    with pytest.raises(ValueError, match="expected 2 weights"):
        linear_scalarisation(_probs(), None, None, torch.tensor([3, 2]), weights=[1.0])


def test_it_passes_the_rl_configs_method_check():
    check_method(linear_scalarisation, {"weights": [0.5, 0.5]})
    with pytest.raises(ValueError, match="reward.options"):
        check_method(linear_scalarisation, {"weight": [0.5, 0.5]})


def test_head_weights_put_zero_on_heads_not_compared():
    assert head_weights([0.3, 0.7], ["verbosity", "harmlessness"], ["helpfulness", "verbosity", "harmlessness"]) \
        == [0.0, 0.3, 0.7]
    with pytest.raises(ValueError, match="not heads of the reward model"):
        head_weights([1.0], ["length"], ["helpfulness"])
