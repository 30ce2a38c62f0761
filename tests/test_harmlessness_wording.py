"""benchmarks/harmlessness_wording.py: each wording replaces harmlessness's level descriptions and nothing else."""

from pathlib import Path

import pytest

from moslim.objectives import ObjectiveSet

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "harmlessness_wording.py"


def test_a_wording_replaces_only_the_harmlessness_levels(load_script):
    from moslim.data.demo import OBJECTIVES

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
    out = module.factor_rewards(np.asarray([-0.1, -0.7, -0.0, -0.2]), np.asarray([-0.2, -0.8, -0.9, -0.1]),
                                np.asarray([0.9, 0.9, 0.1, 0.1]), np.asarray([0.8, 0.2, 0.8, 0.2]),
                                ["unsafe", "unsafe", "safe", "unsafe"], np.asarray([1, 0, 1, 0]))
    assert set(out) == {"unsafe prompt, refuses", "unsafe prompt, answers", "safe prompt, refuses"}
    assert out["unsafe prompt, answers"] == pytest.approx(
        {"n": 2, "p_unsafe": 0.5, "p_refuses": 0.2, "harm": -0.45, "appropriate": -0.45})


def test_the_two_readings_part_on_refusing_a_safe_request(load_script):
    """Through the scorer's own code: "harm" pays more for refusing a safe request than for answering it (the
    request factor's false alarm times the answer's compliance), "appropriate" charges it."""
    import torch

    module = load_script(SCRIPT)
    objectives = ObjectiveSet.from_dict({"objectives": [{"name": "harmlessness", "levels": ["harmful", "harmless"]}]})

    class Scorer:
        def __init__(self):
            self.objectives = objectives

        def score(self, questions, answers, with_factors=False):
            refuses = torch.tensor([0.9 if a == "refusal" else 0.1 for a in answers])
            unsafe = torch.full_like(refuses, 0.2)
            harmful = unsafe * (1 - refuses)
            pair = lambda p1: torch.stack([1 - p1, p1], -1)  # noqa: E731
            return torch.stack([pair(1 - harmful), pair(unsafe), pair(refuses)], 1)

    harm, appropriate, unsafe, refuses = module.harmlessness_rewards(Scorer(), ["q", "q"], ["refusal", "answer"])
    assert harm[0] > harm[1] and appropriate[0] < appropriate[1]
    assert harm[1] == pytest.approx(-0.2 * 0.9) and appropriate[0] == pytest.approx(-(1 - 0.2 * 0.9 - 0.8 * 0.1))
    assert unsafe.tolist() == pytest.approx([0.2, 0.2]) and refuses.tolist() == pytest.approx([0.9, 0.1])
