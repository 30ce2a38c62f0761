import pytest
import torch

from moslim.objectives import ObjectiveSet


def test_objective_set_reads_names_and_class_counts(objectives):
    assert objectives.names == ["helpfulness", "verbosity", "harmlessness"]
    assert torch.equal(objectives.num_levels, torch.tensor([3, 4, 2]))
    assert objectives.max_classes == 4
    assert objectives.index("verbosity") == 1
    assert objectives["verbosity"].level_descriptions[0] == "one sentence"


def test_yaml_round_trip(objectives, tmp_path):
    objectives.to_yaml(tmp_path / "o.yaml")
    assert ObjectiveSet.from_yaml(tmp_path / "o.yaml") == objectives


def test_unknown_objective_lists_valid_names(objectives):
    with pytest.raises(ValueError, match="valid objectives: helpfulness, verbosity, harmlessness"):
        objectives.index("humour")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"name": "Bad Name", "levels": ["a", "b"]}, "field 'name'"),
        ({"name": "tone", "levels": ["only one"]}, "objective 'tone': field 'levels'"),
        ({"name": "tone", "levels": ["a", ""]}, "objective 'tone': field 'levels' item 1"),
        ({"name": "tone", "levels": ["a", "b"], "colour": 1}, "objective 'tone': unknown field"),
        ({"name": "tone", "levels": "abc"}, "objective 'tone': field 'levels'"),
    ],
)
def test_bad_yaml_names_the_objective_and_field(tmp_path, entry, message):
    import yaml

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"objectives": [entry]}))
    with pytest.raises(ValueError, match=message):
        ObjectiveSet.from_yaml(path)


def test_duplicate_objective_is_rejected():
    with pytest.raises(ValueError, match="appears twice"):
        ObjectiveSet.from_dict({"objectives": [{"name": "a", "levels": ["x", "y"]}] * 2})


def test_level_check_gives_the_range(objectives):
    with pytest.raises(ValueError, match="out of range 0-3"):
        objectives["verbosity"].check_level(7)
    assert objectives["verbosity"].check_level("2") == 2
