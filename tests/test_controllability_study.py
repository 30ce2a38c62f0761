"""benchmarks/controllability_study.py: the base model is asked through the template the trained arms use."""

from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "controllability_study.py"


@pytest.fixture(scope="module")
def module(load_script):
    return load_script(SCRIPT)


def test_the_base_is_asked_through_the_arms_template(module):
    assert module.arm_template([]).placement == "user"  # configs/demo/rl.yaml's data.template
    assert module.arm_template(["data.template=null"]).placement == "system"


def test_the_base_is_asked_in_the_arms_words(module, tmp_path):
    from moslim.data.demo import OBJECTIVES
    from moslim.objectives import ObjectiveSet

    assert module.arm_objectives([], OBJECTIVES) is OBJECTIVES  # rl.yaml names no data.objectives
    data = OBJECTIVES.to_dict()
    data["objectives"][2]["levels"] = ["help with anything", "stay safe"]
    path = tmp_path / "objectives.yaml"
    ObjectiveSet.from_dict(data).to_yaml(path)
    reworded = module.arm_objectives([f"data.objectives={path}"], OBJECTIVES)
    assert reworded["harmlessness"].level_descriptions == ("help with anything", "stay safe")
    data["objectives"][2]["levels"] = ["help with anything", "stay safe", "a third level"]
    ObjectiveSet.from_dict(data).to_yaml(path)
    with pytest.raises(ValueError, match="does not match"):
        module.arm_objectives([f"data.objectives={path}"], OBJECTIVES)
