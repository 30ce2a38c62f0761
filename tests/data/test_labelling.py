"""Labelling: fixed and quantile bins, tables, the spec in YAML, and the exact verbosity judge."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from moslim.data.labelling import (
    LabellingSpec,
    Rule,
    fit_quantile_edges,
    judge_level,
    load_labelling,
    verbosity_level,
)

ASSETS = Path(__file__).parent.parent / "assets"
WORDS_RULE = Rule(signal="words", bins="fixed", edges=(15, 40, 70))


def words(n: int) -> str:
    return " ".join(["w"] * n)


@pytest.mark.parametrize("n, level", [(0, 0), (15, 0), (16, 1), (40, 1), (41, 2), (70, 2), (71, 3), (500, 3)])
def test_fixed_bins_are_upper_inclusive(n, level):
    spec = LabellingSpec({"verbosity": [WORDS_RULE]})
    assert verbosity_level(words(n), spec) == level


def test_word_count_splits_on_any_whitespace():
    spec = LabellingSpec({"verbosity": [WORDS_RULE]})
    assert verbosity_level("  one\ttwo\n\nthree  " + " x" * 13, spec) == 1  # 16 words


def test_quantile_edges_split_the_fitted_values_evenly():
    edges = fit_quantile_edges([9, 1, 8, 2, 7, 3, 6, 4, 5], 3)
    assert edges == (3, 6)  # sorted 1..9: ranks 3 and 6 close the first two thirds
    rule = Rule(signal="s", bins="quantile", edges=edges)
    assert [rule.level(v) for v in range(1, 10)] == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_stored_quantile_edges_apply_unchanged_to_new_data():
    rule = Rule(signal="s", bins="quantile", edges=fit_quantile_edges([1.0, 1.1, 1.2, 1.3, 1.4, 1.5], 3))
    assert rule.edges == (1.1, 1.3)
    assert [rule.level(v) for v in (0.0, 1.1, 1.15, 1.3, 9.0)] == [0, 0, 1, 1, 2]


def test_quantile_fit_refuses_ties_that_merge_levels():
    with pytest.raises(ValueError, match="not distinct"):
        fit_quantile_edges([1, 1, 1, 1, 1, 2], 3)
    with pytest.raises(ValueError, match="cannot fit 3 quantile bins on 2 values"):
        fit_quantile_edges([1, 2], 3)


def test_first_rule_with_its_signal_wins_and_unlisted_categories_stay_unlabelled():
    spec = LabellingSpec({
        "helpfulness": [Rule(signal="pref", bins="quantile", edges=(1.2, 1.5)),
                        Rule(signal="verdict", table={"safe/full_refusal": 0})],
        "verbosity": [WORDS_RULE],
    })
    assert spec.label({"pref": 1.3}, response="a b c") == {"helpfulness": 1, "verbosity": 0}
    assert spec.label({"verdict": "safe/full_refusal"}) == {"helpfulness": 0}
    assert spec.label({"verdict": "safe/full_compliance"}) == {}


def test_bins_need_a_number():
    with pytest.raises(ValueError, match="signal 'pref' needs a number"):
        Rule(signal="pref", bins="fixed", edges=(1,)).level("high")


def test_spec_round_trips_through_yaml_next_to_the_objectives(tmp_path):
    spec = LabellingSpec({"verbosity": [WORDS_RULE],
                          "harmlessness": [Rule(signal="v", table={"unsafe/full_compliance": 0, "x": 1})]})
    data = yaml.safe_load((ASSETS / "objectives.yaml").read_text())
    data["labelling"] = spec.to_dict()
    path = tmp_path / "objectives.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    loaded = load_labelling(path)
    assert loaded.to_dict() == spec.to_dict()
    assert verbosity_level(words(41), loaded) == 2


@pytest.mark.parametrize("labelling, message", [
    ({"verbosity": [{"signal": "words", "bins": "fixed", "edges": [15, 40]}]},
     r"labelling.verbosity\[0\]: 2 edges make 3 levels, but 'verbosity' has 4"),
    ({"verbosity": [{"signal": "words", "bins": "fixed", "edges": [40, 15, 70]}]}, "must increase strictly"),
    ({"verbosity": [{"signal": "words", "bins": "deciles", "edges": [1, 2, 3]}]}, "not one of fixed, quantile"),
    ({"harmlessness": [{"signal": "v", "table": {"a": 2}}]}, r"level 2 for 'harmlessness' is out of range 0-1"),
    ({"tone": [{"signal": "v", "table": {"a": 0}}]}, "unknown objective 'tone'"),
    ({"verbosity": [{"signal": "words", "bins": "fixed", "edges": [1, 2, 3], "table": {}}]}, "not both"),
    ({"verbosity": [{"signal": "words", "bins": "fixed", "edges": [1, 2, 3], "color": 1}]}, "unknown field"),
])
def test_bad_spec_is_rejected_with_its_place(tmp_path, labelling, message):
    data = yaml.safe_load((ASSETS / "objectives.yaml").read_text())
    data["labelling"] = labelling
    path = tmp_path / "objectives.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ValueError, match=message):
        load_labelling(path)


def test_file_without_a_labelling_section_says_so():
    with pytest.raises(ValueError, match="no 'labelling' section"):
        load_labelling(ASSETS / "objectives.yaml")


def test_objective_without_a_word_rule_has_no_exact_judge():
    spec = LabellingSpec({"verbosity": [WORDS_RULE], "helpfulness": [Rule(signal="p", bins="fixed", edges=(1, 2))]})
    with pytest.raises(ValueError, match="no 'words' rule for 'helpfulness'.*with one: verbosity"):
        judge_level("text", "helpfulness", spec)


@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=4, unique=True), st.floats(-2e6, 2e6),
       st.floats(-2e6, 2e6))
def test_levels_are_in_range_and_never_drop_as_the_value_grows(edges, a, b):
    rule = Rule(signal="s", bins="fixed", edges=tuple(sorted(edges)))
    low, high = sorted((a, b))
    assert 0 <= rule.level(low) <= rule.level(high) <= len(edges)
