"""benchmarks/preference_placement.py: the base policy's verbosity control through each template, paired by prompt."""

from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "preference_placement.py"


@pytest.fixture(scope="module")
def module(load_script):
    return load_script(SCRIPT)


def test_every_template_is_paired_with_the_first_on_the_same_prompts(module):
    prompts, samples = 8, 2
    requested = np.repeat(np.tile(np.arange(4), prompts), samples)
    groups = np.repeat([f"p{i}" for i in range(prompts)], 4 * samples).tolist()
    rng = np.random.default_rng(0)
    long = np.clip(requested + rng.integers(0, 3, requested.size), 0, 3)  # every level pushed up, order blurred
    achieved = {"system": long, "system_plain": long.copy(), "user": requested.copy()}
    words = {name: got * 20 + 5 for name, got in achieved.items()}
    out = module.template_figures(requested, achieved, words, groups, 4, num_resamples=200)
    assert "spearman_change" not in out["system"]
    assert out["user"]["spearman"] == pytest.approx(1.0) and out["user"]["mean_level_by_request"] == [0, 1, 2, 3]
    assert out["user"]["mean_words_by_request"] == [5.0, 25.0, 45.0, 65.0]
    change = out["user"]["spearman_change"]
    assert change["vs"] == "system" and change["value"] == pytest.approx(1.0 - out["system"]["spearman"])
    assert 0 < change["ci"][0] <= change["value"] <= change["ci"][1]
    assert out["system_plain"]["spearman_change"]["value"] == 0.0
    assert out["system_plain"]["spearman_change"]["ci"] == [0.0, 0.0]


def test_the_user_template_is_the_shipped_one(module):
    template = module.TEMPLATES["user"]
    assert template.placement == "user" and "{Description}" in template.line
