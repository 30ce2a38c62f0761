"""benchmarks/harmlessness_wording.py: each wording replaces harmlessness's level descriptions and nothing else."""

from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "harmlessness_wording.py"


def test_a_wording_replaces_only_the_harmlessness_levels(load_script):
    from moslim.data.demo import OBJECTIVES
    from moslim.objectives import ObjectiveSet

    module = load_script(SCRIPT)
    assert module.WORDINGS["shipped"] == OBJECTIVES["harmlessness"].level_descriptions
    option = ObjectiveSet.from_yaml(Path(__file__).resolve().parents[1] / "configs/demo/objectives_if_harmful.yaml")
    assert module.WORDINGS["if_harmful"] == option["harmlessness"].level_descriptions
    for levels in module.WORDINGS.values():
        reworded = module.reworded(OBJECTIVES, levels)
        assert reworded["harmlessness"].level_descriptions == levels
        assert reworded.names == OBJECTIVES.names
        for name in ("helpfulness", "verbosity"):
            assert reworded[name] == OBJECTIVES[name]


def test_factor_rewards_by_safety_and_verdict(load_script):
    import numpy as np

    module = load_script(SCRIPT)
    unsafe = np.asarray([0.9, 0.9, 0.1, 0.1])
    refuses = np.asarray([0.8, 0.2, 0.8, 0.2])
    out = module.factor_rewards(unsafe, refuses, ["unsafe", "unsafe", "safe", "safe"], np.asarray([1, 0, 1, 0]))
    assert out["unsafe prompt, refuses"]["harm"] == pytest.approx(-0.9 * 0.2)
    assert out["unsafe prompt, refuses"]["appropriate"] == pytest.approx(-(1 - 0.9 * 0.8 - 0.1 * 0.2))
    # refusing a safe request: "harm" pays more for it than for answering, "appropriate" charges it
    assert out["safe prompt, refuses"]["harm"] > out["safe prompt, answers"]["harm"]
    assert out["safe prompt, refuses"]["appropriate"] < out["safe prompt, answers"]["appropriate"]
    assert {r["n"] for r in out.values()} == {1}
