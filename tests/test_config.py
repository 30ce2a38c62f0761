from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import pytest

from moslim.config import bounded, load_config


@dataclass
class Optim:
    lr: float = 1e-4  # learning rate
    steps: int = 10
    schedule: Literal["linear", "cosine"] = "linear"


@dataclass
class Job:
    name: str = "run"
    model: str | None = None
    layers: list[int] = field(default_factory=list)
    optim: Optim = field(default_factory=Optim)
    trl: dict[str, Any] = field(default_factory=dict)  # passed through to TRL


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_exponent_floats_reach_pass_through_sections_as_numbers(tmp_path):
    # PyYAML's YAML 1.1 rules read "4e-5" as a string; TRL then failed deep inside the optimiser.
    cfg = load_config(Job, write(tmp_path, "trl:\n  learning_rate: 1e-4\n  max_grad_norm: 1E0\n"),
                      ["trl.beta=4e-5", "trl.scale=-2.5e-3", "trl.tag=1e"])
    assert cfg.trl == {"learning_rate": 1e-4, "max_grad_norm": 1.0, "beta": 4e-5, "scale": -2.5e-3, "tag": "1e"}
    assert all(isinstance(cfg.trl[k], float) for k in ("learning_rate", "max_grad_norm", "beta", "scale"))


def test_yaml_and_dotted_overrides_build_typed_config(tmp_path):
    path = write(tmp_path, "name: a\noptim:\n  lr: 3e-4\n  steps: 5\ntrl:\n  beta: 0.1\n")
    cfg = load_config(Job, path, ["optim.steps=7", "layers=[1, 2]", "trl.num_generations=4"])
    assert cfg.optim.lr == pytest.approx(3e-4) and cfg.optim.steps == 7
    assert cfg.layers == [1, 2] and cfg.trl == {"beta": 0.1, "num_generations": 4}
    assert cfg.model is None


def test_unknown_key_suggests_the_close_one(tmp_path):
    with pytest.raises(ValueError, match=r"unknown key 'stpes' in Optim; did you mean 'steps'\?"):
        load_config(Job, write(tmp_path, "optim:\n  stpes: 3\n"))
    with pytest.raises(ValueError, match="unknown key 'optimiser'"):
        load_config(Job, None, ["optimiser.lr=1"])


def test_wrong_types_name_the_field(tmp_path):
    with pytest.raises(ValueError, match=r"optim:steps: expected an integer, got 'many'"):
        load_config(Job, write(tmp_path, "optim:\n  steps: many\n"))
    with pytest.raises(ValueError, match=r"'adam' is not one of 'linear', 'cosine'"):
        load_config(Job, None, ["optim.schedule=adam"])


def test_bad_override_syntax_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="section.field=value"):
        load_config(Job, None, ["optim.lr"])
    with pytest.raises(ValueError, match="does not exist"):
        load_config(Job, tmp_path / "nope.yaml")


@dataclass
class Ranged:
    steps: int | None = None
    batch: int = bounded(8, low=1)
    temperature: float = bounded(1.0, low=0, low_inclusive=False)
    top_p: float = bounded(1.0, high=1)
    offset: float = bounded(0.0, low=None)
    sizes: list[int] = field(default_factory=list)


def test_numbers_are_range_checked_when_read(tmp_path):
    cfg = load_config(Ranged, write(tmp_path, "steps: 0\nbatch: 1\ntemperature: 0.5\noffset: -3\nsizes: [0, 2]\n"))
    assert (cfg.steps, cfg.batch, cfg.offset, cfg.sizes) == (0, 1, -3.0, [0, 2])
    bad = {"steps: -5": r"steps: -5 is out of range; expected a number >= 0",
           "batch: 0": r"batch: 0 is out of range; expected a number >= 1",
           "temperature: 0": r"expected a number > 0", "top_p: 1.5": r"expected a number >= 0 and <= 1",
           "sizes: [1, -1]": r"sizes: -1 is out of range", "temperature: .nan": "got nan"}
    for text, message in bad.items():
        with pytest.raises(ValueError, match=message):
            load_config(Ranged, write(tmp_path, text + "\n"))


def test_an_override_error_names_the_override_not_the_yaml(tmp_path):
    path = write(tmp_path, "optim:\n  steps: 5\n")
    with pytest.raises(ValueError, match=r"^override 'optim.steps=-5': -5 is out of range"):
        load_config(Job, path, ["optim.steps=-5"])
    with pytest.raises(ValueError, match=r"^override 'optim.steps=x': expected an integer"):
        load_config(Job, path, ["optim.steps=x"])
    with pytest.raises(ValueError, match=r"^override 'optim.stpes=1': unknown key 'stpes'"):
        load_config(Job, path, ["optim.stpes=1"])
    with pytest.raises(ValueError, match=r"c\.yaml:optim:steps: expected an integer"):
        load_config(Job, write(tmp_path, "optim:\n  steps: x\n"), ["optim.lr=1"])


def test_renamed_keys_say_their_new_name(tmp_path):
    from moslim.reward.config import RewardTrainConfig

    with pytest.raises(ValueError, match=r"train:lr: 'lr' was renamed to 'learning_rate'"):
        load_config(RewardTrainConfig, write(tmp_path, "train:\n  lr: 1.0e-4\n"))
    with pytest.raises(ValueError, match=r"override 'train.head_lr=1': 'head_lr' was renamed to 'head_learning_rate'"):
        load_config(RewardTrainConfig, None, ["train.head_lr=1"])
    with pytest.raises(ValueError, match=r"train.resume='nowhere': expected 'auto', 'never' or a checkpoint folder"):
        load_config(RewardTrainConfig, None, ["train.resume=nowhere"])
    assert load_config(RewardTrainConfig, None, ["train.resume=never"]).train.resume == "never"


@dataclass
class Renaming:
    RENAMED: ClassVar[dict[str, tuple[str, str]]] = {"old": ("new", "one word per concept")}

    new: int = 1


def test_renamed_key_gets_its_own_message_with_the_reason_even_after_an_unknown_key(tmp_path):
    with pytest.raises(ValueError, match=r"c\.yaml:old: 'old' was renamed to 'new' \(one word per concept\); "
                                         r"write new: instead"):
        load_config(Renaming, write(tmp_path, "typo: 1\nold: 2\n"))


def test_an_override_value_that_is_not_yaml_names_the_override():
    for item in ("optim.steps=\x1b", "optim.steps=[1"):
        with pytest.raises(ValueError, match="the value is not valid YAML") as err:
            load_config(Job, None, [item])
        assert str(err.value).startswith(f"override {item!r}")


@dataclass
class Retiring:
    RETIRED: ClassVar[dict[str, dict[str, str]]] = {"mode": {"old": "gone in v2; use 'new'"}}

    mode: Literal["new", "other"] = "new"


def test_retired_value_gets_its_own_message(tmp_path):
    with pytest.raises(ValueError, match=r"^override 'mode=old': 'old' is not available: gone in v2; use 'new'$"):
        load_config(Retiring, None, ["mode=old"])
    with pytest.raises(ValueError, match=r"'bad' is not one of 'new', 'other'"):
        load_config(Retiring, None, ["mode=bad"])
    assert load_config(Retiring, write(tmp_path, "mode: other\n")).mode == "other"


def test_every_command_config_lives_in_its_areas_config_module():
    """One convention: the YAML a command reads is a dataclass in `<area>/config.py`, one hop from a key."""
    import dataclasses
    import typing

    from moslim.baselines.config import BaselineConfig
    from moslim.demo.config import DemoConfig
    from moslim.evaluation.config import EvalConfig
    from moslim.policy.config import RLConfig
    from moslim.reward.config import RewardTrainConfig

    def sections(config_class):
        for hint in typing.get_type_hints(config_class).values():
            if dataclasses.is_dataclass(hint):
                yield hint
                yield from sections(hint)

    for config_class in (BaselineConfig, DemoConfig, EvalConfig, RLConfig, RewardTrainConfig):
        assert config_class.__module__.endswith(".config"), config_class
        found = list(sections(config_class))
        assert found, config_class  # every command config has sections
        for section in found:  # and so do their sections (shared ones in the area that owns them)
            assert section.__module__.endswith(".config"), (config_class, section)
