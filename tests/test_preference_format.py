"""benchmarks/preference_format.py: one policy's verbosity control in two preference formats, paired by prompt."""

from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "preference_format.py"


@pytest.fixture(scope="module")
def module(load_script):
    return load_script(SCRIPT)


def test_a_format_that_follows_the_levels_beats_one_that_answers_long(module):
    prompts = 8
    requested = np.tile(np.arange(4), prompts)
    groups = np.repeat([f"p{i}" for i in range(prompts)], 4).tolist()
    rng = np.random.default_rng(0)
    long = np.clip(requested + rng.integers(0, 3, requested.size), 0, 3)  # every level pushed up, order blurred
    out = module.format_figures(requested, {"alone": long, "with_harmlessness": requested.copy()}, groups, 4,
                                num_resamples=200)
    assert out["with_harmlessness"]["spearman"] == pytest.approx(1.0)
    assert out["with_harmlessness"]["hit_rate"] == 1.0
    assert out["with_harmlessness"]["mean_level_by_request"] == [0.0, 1.0, 2.0, 3.0]
    assert out["alone"]["mean_level_by_request"][1] > 1.0 and out["alone"]["spearman"] < 1.0
    change = out["spearman_change"]
    assert change["formats"] == ["with_harmlessness", "alone"]
    assert change["value"] == pytest.approx(1.0 - out["alone"]["spearman"])
    assert 0 < change["ci"][0] <= change["value"] <= change["ci"][1]


def test_the_same_answers_in_both_formats_differ_by_nothing(module):
    requested = np.tile(np.arange(4), 6)
    achieved = np.clip(requested + np.tile([0, 1, 1, -1], 6), 0, 3)
    groups = np.repeat([f"p{i}" for i in range(6)], 4).tolist()
    out = module.format_figures(requested, {"alone": achieved, "with_harmlessness": achieved}, groups, 4,
                                num_resamples=100)
    assert out["spearman_change"]["value"] == 0.0 and out["spearman_change"]["ci"] == [0.0, 0.0]
