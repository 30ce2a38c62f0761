"""benchmarks/compare_arms.py: per-seed and pooled differences between two study arms."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def module(load_script):
    return load_script(BENCHMARKS / "compare_arms.py")


def arm(path: Path, achieved: list[int], refused_unsafe: list[int] | None = None) -> Path:
    """An arm result: 8 prompts x 4 requested levels, and optionally 8 unsafe + 8 safe harmlessness rows."""
    prompts = [f"p{i}" for i in range(8) for _ in range(4)]
    after = {"rows": {"prompt": prompts, "requested": [0, 1, 2, 3] * 8, "achieved": achieved}}
    if refused_unsafe is not None:
        after["harmlessness"] = {"rows": {
            "prompt": [f"u{i}" for i in range(8)] + [f"s{i}" for i in range(8)],
            "requested": [1] * 16, "safety": ["unsafe"] * 8 + ["safe"] * 8,
            "refused": refused_unsafe + [0] * 7 + [1], "answer": [""] * 16}}
    path.write_text(json.dumps({"after": after}))
    return path


def test_a_perfect_arm_beats_a_noisy_one_in_every_seed_and_pooled(module, tmp_path):
    perfect = [0, 1, 2, 3] * 8
    rng = np.random.default_rng(1)
    noisy = [list(rng.integers(0, 4, size=32)) for _ in range(2)]
    a = [arm(tmp_path / f"a{s}.json", perfect, [1] * 8) for s in range(2)]
    b = [arm(tmp_path / f"b{s}.json", [int(v) for v in noisy[s]], [1, 0] * 4) for s in range(2)]
    out = module.compare(a, b, num_resamples=200)
    for figure in out["spearman"]["per_pair"]:
        assert figure["value"] > 0.5 and figure["ci"][0] > 0
    pooled = out["spearman"]["pooled"]
    assert pooled["value"] == pytest.approx(np.mean([p["value"] for p in out["spearman"]["per_pair"]]))
    assert pooled["ci"][0] <= pooled["value"] <= pooled["ci"][1]
    assert out["refusal_unsafe_asked_harmless"]["pooled"]["value"] == pytest.approx(0.5)
    assert out["compliance_safe_asked_harmless"]["pooled"]["value"] == pytest.approx(0.0)


def test_an_arm_against_itself_differs_by_zero_in_every_resample(module, tmp_path):
    achieved = [0, 1, 1, 3] * 8
    a = arm(tmp_path / "a.json", achieved)
    out = module.compare([a], [a], num_resamples=50)
    assert out["hit_rate"]["pooled"] == {"value": 0.0, "ci": [0.0, 0.0]}
    assert "refusal_unsafe_asked_harmless" not in out  # no harmlessness rows: that figure is left out


def test_arms_on_other_prompts_or_unpaired_lists_are_refused(module, tmp_path):
    a = arm(tmp_path / "a.json", [0, 1, 2, 3] * 8)
    other = json.loads(a.read_text())
    other["after"]["rows"]["prompt"] = [f"q{i}" for i in range(8) for _ in range(4)]
    b = tmp_path / "b.json"
    b.write_text(json.dumps(other))
    with pytest.raises(ValueError, match="other prompts"):
        module.compare([a], [b])
    with pytest.raises(ValueError, match="pair them one to one"):
        module.compare([a, a], [a])


def test_the_command_prints_each_figure(tmp_path):
    a = arm(tmp_path / "a.json", [0, 1, 2, 3] * 8)
    b = arm(tmp_path / "b.json", [0, 0, 1, 1] * 8)
    out = subprocess.run([sys.executable, str(BENCHMARKS / "compare_arms.py"), "--a", str(a), "--b", str(b),
                          "--resamples", "50", "--json", str(tmp_path / "c.json")],
                         capture_output=True, text=True, check=True).stdout
    assert out.startswith("spearman: A - B per pair") and "pooled" in out and "hit_rate" in out
    assert set(json.loads((tmp_path / "c.json").read_text())) == {"spearman", "hit_rate"}


def test_the_interval_over_seeds_widens_with_their_disagreement(module):
    agree = module.over_seeds([0.10, 0.11, 0.09])
    disagree = module.over_seeds([0.25, -0.10, 0.15])
    assert agree["value"] == pytest.approx(0.10) and agree["seeds"] == 3
    assert agree["ci"][0] > 0  # three seeds that agree: the interval stays above zero
    assert disagree["ci"][0] < 0 < disagree["ci"][1]  # a mean of +0.10 whose seeds disagree: not established
    # t with 2 degrees of freedom: 4.303 x sd / sqrt(3)
    half = 4.302653 * np.std([0.25, -0.10, 0.15], ddof=1) / np.sqrt(3)
    assert disagree["ci"][1] - disagree["value"] == pytest.approx(half, rel=1e-5)
    one = module.over_seeds([0.2])
    assert one["value"] == pytest.approx(0.2) and all(np.isnan(one["ci"]))  # one run: no spread to measure


def test_compare_reports_the_interval_over_seeds(module, tmp_path):
    perfect = [0, 1, 2, 3] * 8
    a = [arm(tmp_path / f"a{s}.json", perfect) for s in range(2)]
    b = [arm(tmp_path / f"b{s}.json", [0, 0, 0, 0] * 4 + [0, 1, 2, 3] * 4) for s in range(2)]
    out = module.compare(a, b, num_resamples=50)["spearman"]
    assert out["over_seeds"]["seeds"] == 2
    assert out["over_seeds"]["value"] == pytest.approx(out["pooled"]["value"])
    assert out["over_seeds"]["ci"] == [pytest.approx(out["pooled"]["value"])] * 2  # identical seeds: no spread
