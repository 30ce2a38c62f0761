import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moslim.evaluation.controllability import (
    bootstrap_ci,
    hit_rate,
    level_metrics,
    mean_abs_error,
    mean_by_level,
    slope,
    spearman,
)

levels = st.lists(st.integers(0, 4), min_size=2, max_size=30)


def test_hit_rate_and_error_match_hand_counts():
    requested = [0, 1, 2, 3]
    achieved = [0, 2, 2, 0]
    assert hit_rate(requested, achieved) == 0.5  # positions 0 and 2 hit
    assert mean_abs_error(requested, achieved) == (0 + 1 + 0 + 3) / 4


def test_spearman_handles_ties_with_average_ranks():
    # requested ranks: 1.5 1.5 3.5 3.5 ; achieved ranks: 1 2 3 4 (hand computed)
    # dx = -1 -1 1 1 ; dy = -1.5 -.5 .5 1.5 -> sum dxdy = 4, sum dx2 = 4, sum dy2 = 5
    expected = 4 / math.sqrt(4 * 5)
    assert spearman([0, 0, 1, 1], [0, 1, 2, 3]) == pytest.approx(expected)


def test_spearman_is_one_for_monotone_and_minus_one_for_reversed():
    assert spearman([0, 1, 2, 3], [1, 5, 6, 9]) == pytest.approx(1.0)
    assert spearman([0, 1, 2, 3], [9, 6, 5, 1]) == pytest.approx(-1.0)


def test_degenerate_input_gives_nan_not_zero():
    assert math.isnan(spearman([0, 1, 2], [1, 1, 1]))  # policy ignores the request
    assert math.isnan(spearman([2, 2, 2], [0, 1, 2]))  # nothing requested varies
    assert math.isnan(spearman([1], [1]))
    assert math.isnan(slope([2, 2], [0, 1]))
    assert math.isnan(hit_rate([], []))


def test_slope_is_least_squares_fit():
    # achieved = 0.5 * requested + 1 exactly
    assert slope([0, 2, 4], [1, 2, 3]) == pytest.approx(0.5)
    # hand computed: x = 0,1,2 y = 0,0,3 -> dx = -1,0,1, dy = -1,-1,2 -> 3 / 2
    assert slope([0, 1, 2], [0, 0, 3]) == pytest.approx(1.5)


def test_mean_by_level_groups_achieved_by_request():
    assert mean_by_level([0, 0, 1, 1], [0, 1, 3, 3]) == {0: 0.5, 1: 3.0}


def test_unequal_lengths_raise_with_shapes():
    with pytest.raises(ValueError, match="equal length"):
        hit_rate([0, 1], [0])


@given(levels)
def test_perfect_tracking_scores_perfectly(requested):
    assert hit_rate(requested, requested) == 1.0
    assert mean_abs_error(requested, requested) == 0.0
    if len(set(requested)) > 1:
        assert spearman(requested, requested) == pytest.approx(1.0)
        assert slope(requested, requested) == pytest.approx(1.0)


@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=2, max_size=30))
def test_spearman_is_bounded_and_symmetric(pairs):
    req, ach = zip(*pairs)
    value = spearman(req, ach)
    if not math.isnan(value):
        assert -1.0 <= value <= 1.0
        assert value == pytest.approx(spearman(ach, req))


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(1)
    groups = np.repeat(np.arange(20), 3)
    values = rng.normal(size=groups.size)
    stat = lambda rows: float(values[rows].mean())  # noqa: E731
    first = bootstrap_ci(groups, stat, num_resamples=300, seed=7)
    assert first == bootstrap_ci(groups, stat, num_resamples=300, seed=7)
    assert first[0] <= values.mean() <= first[1]
    assert first != bootstrap_ci(groups, stat, num_resamples=300, seed=8)


def test_bootstrap_resamples_whole_prompts():
    # Each prompt's rows are all 0 or all 1, so any resample's mean is (#ones drawn) / (#prompts drawn):
    # a multiple of 1/4 when 4 prompts are drawn. Resampling single rows would break this.
    groups = ["a", "a", "b", "b", "c", "c", "d", "d"]
    values = np.array([0, 0, 1, 1, 0, 0, 1, 1], dtype=float)
    seen = []
    bootstrap_ci(groups, lambda rows: seen.append(values[rows].mean()) or 0.0, num_resamples=50)
    assert all(abs(v * 4 - round(v * 4)) < 1e-9 for v in seen)


def test_bootstrap_of_always_nan_statistic_is_nan():
    low, high = bootstrap_ci([0, 1, 2], lambda rows: math.nan, num_resamples=10)
    assert math.isnan(low) and math.isnan(high)


@settings(max_examples=20, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=4, max_size=20))
def test_level_metrics_intervals_contain_the_hit_rate_bounds(pairs):
    req, ach = zip(*pairs)
    groups = [i // 2 for i in range(len(req))]
    out = level_metrics(req, ach, groups, num_resamples=50)
    assert set(out) == {"hit_rate", "mean_abs_error", "spearman", "slope"}
    low, high = out["hit_rate"]["ci"]
    assert 0.0 <= low <= high <= 1.0


def test_paired_change_is_after_minus_before_with_a_paired_interval():
    from moslim.evaluation.controllability import paired_change

    # prompts a, b: before hits 1 of 2 per prompt, after hits both -> hit rate 0.5 -> 1.0
    requested = [0, 1, 0, 1, 0, 1, 0, 1]
    achieved = [0, 0, 0, 0, 0, 1, 0, 1]
    after = [False, False, False, False, True, True, True, True]
    groups = ["a", "a", "b", "b", "a", "a", "b", "b"]
    value, (low, high) = paired_change(hit_rate, requested, achieved, after, groups, num_resamples=100)
    assert value == pytest.approx(0.5)
    assert low == pytest.approx(0.5) and high == pytest.approx(0.5)  # every prompt improved by the same


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=2, max_size=12))
@settings(max_examples=25, deadline=None)
def test_paired_change_of_identical_policies_is_zero(pairs):
    from moslim.evaluation.controllability import paired_change

    req, ach = (list(x) for x in zip(*pairs))
    groups = [i // 2 for i in range(len(req))] * 2
    value, (low, high) = paired_change(mean_abs_error, req + req, ach + ach, [False] * len(req) + [True] * len(req),
                                       groups, num_resamples=30)
    assert value == 0.0 and low == 0.0 and high == 0.0
