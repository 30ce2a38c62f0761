import pytest
from hypothesis import given
from hypothesis import strategies as st

from moslim.evaluation.pareto import dominates, hypervolume_2d, pareto_front

point = st.tuples(st.floats(0, 10, allow_nan=False), st.floats(0, 10, allow_nan=False))


def test_front_of_hand_made_points():
    points = [(1, 5), (2, 4), (1, 1), (3, 1), (2, 2), (0, 6)]
    # (1,1) and (2,2) are dominated by (2,4); (3,1), (1,5), (0,6) trade off.
    assert pareto_front(points) == [0, 1, 3, 5]


def test_equal_points_both_stay_on_the_front():
    assert pareto_front([(1, 1), (1, 1), (0, 0)]) == [0, 1]


def test_hypervolume_of_one_point_is_its_rectangle():
    assert hypervolume_2d([(3, 2)], reference=(1, 1)) == pytest.approx(2 * 1)


def test_hypervolume_of_staircase_is_union_of_rectangles():
    # rectangles [0,3]x[0,1], [0,2]x[0,2], [0,1]x[0,3] -> 3 + (2*1) + (1*1) = 6
    assert hypervolume_2d([(3, 1), (2, 2), (1, 3)], reference=(0, 0)) == pytest.approx(6.0)


def test_points_below_the_reference_add_nothing():
    assert hypervolume_2d([(0.5, 4), (4, -1)], reference=(1, 0)) == 0.0
    assert hypervolume_2d([], reference=(0, 0)) == 0.0


@given(st.lists(point, min_size=1, max_size=25))
def test_front_has_no_dominated_point_and_dominates_the_rest(points):
    front = pareto_front(points)
    assert front
    for i in front:
        assert not any(dominates(p, points[i]) for p in points)
    for j in set(range(len(points))) - set(front):
        assert any(dominates(points[i], points[j]) for i in front)


@given(st.lists(point, max_size=20), point)
def test_hypervolume_never_drops_when_a_point_is_added(points, extra):
    assert hypervolume_2d(points + [extra], (0, 0)) >= hypervolume_2d(points, (0, 0)) - 1e-9


@given(st.lists(point, min_size=1, max_size=20))
def test_hypervolume_depends_only_on_the_front(points):
    front = [points[i] for i in pareto_front(points)]
    assert hypervolume_2d(front, (0, 0)) == pytest.approx(hypervolume_2d(points, (0, 0)))
