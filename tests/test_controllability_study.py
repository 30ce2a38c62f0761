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
