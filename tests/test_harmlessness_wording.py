"""benchmarks/harmlessness_wording.py: each wording replaces harmlessness's level descriptions and nothing else."""

from pathlib import Path

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
