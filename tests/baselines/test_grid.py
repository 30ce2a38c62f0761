"""The preference grid and the rules mapping each point to every method's input, with their inverses."""

from __future__ import annotations

import pytest

from moslim.baselines.grid import (
    levels_for,
    ric_desired_rewards,
    ric_weights,
    spread_indices,
    weight_grid,
    weights_for_levels,
)
from moslim.preferences import Preference

NAMES = ["verbosity", "harmlessness"]


def test_grid_has_eleven_points_from_zero_to_one_in_tenths():
    grid = weight_grid(11)
    assert len(grid) == 11
    assert grid[0] == (0.0, 1.0) and grid[3] == pytest.approx((0.3, 0.7)) and grid[10] == (1.0, 0.0)
    assert all(abs(sum(w) - 1) < 1e-9 for w in grid)


def test_morlhf_trains_the_ends_and_the_middle_by_default():
    assert spread_indices(11, 3) == [0, 5, 10]
    assert spread_indices(11, 11) == list(range(11))
    with pytest.raises(ValueError, match="policies=12: expected 1 to 11"):
        spread_indices(11, 12)


def test_levels_follow_the_rounding_rule_hand_computed(objectives):
    # verbosity has 4 levels (top 3), harmlessness 2 (top 1): level = round_half_up(w * top)
    expected = {0.0: (0, 1), 0.1: (0, 1), 0.2: (1, 1), 0.4: (1, 1), 0.5: (2, 1), 0.6: (2, 0), 0.9: (3, 0), 1.0: (3, 0)}
    for t, (v, h) in expected.items():
        assert levels_for((t, 1 - t), NAMES, objectives) == Preference.of(verbosity=v, harmlessness=h), t


def test_levels_round_trip_through_weights(objectives):
    """levels -> weights -> levels gives the same levels for every point of the grid."""
    for w in weight_grid(11):
        pref = levels_for(w, NAMES, objectives)
        back = weights_for_levels(pref, NAMES, objectives)
        assert abs(sum(back) - 1) < 1e-9
        assert levels_for(back, NAMES, objectives) == pref, w


def test_bad_weights_are_an_error_naming_what_was_expected(objectives):
    with pytest.raises(ValueError, match=r"expected 2 non-negative weights summing to 1, got \[0.5, 0.6\]"):
        levels_for([0.5, 0.6], NAMES, objectives)


def test_ric_mapping_hand_computed():
    low, high = [0.2, 0.4], [0.8, 1.0]
    assert ric_desired_rewards([0.5, 0.5], low, high) == pytest.approx([0.8, 1.0])  # both >= 1/2: both at max
    # w_1 = 0.2 < 1/2: 0.2 + 2 * 0.2 * (0.8 - 0.2) = 0.44; the other at its max
    assert ric_desired_rewards([0.2, 0.8], low, high) == pytest.approx([0.44, 1.0])
    assert ric_desired_rewards([1.0, 0.0], low, high) == pytest.approx([0.8, 0.4])


def test_ric_mapping_round_trips_on_the_grid():
    low, high = [0.1, 0.3], [0.9, 0.95]
    for w in weight_grid(11):
        assert ric_weights(ric_desired_rewards(w, low, high), low, high) == pytest.approx(list(w)), w


def test_ric_inverse_rejects_rewards_no_preference_gives():
    with pytest.raises(ValueError, match="at least one objective at its maximum"):
        ric_weights([0.2, 0.2], [0, 0], [1, 1])


def test_levels_no_weight_vector_reaches_are_an_error(objectives):
    # verbosity 0 needs t < 1/6, harmlessness 0 needs t > 1/2
    with pytest.raises(ValueError, match="no weight vector"):
        weights_for_levels(Preference.of(verbosity=0, harmlessness=0), NAMES, objectives)
