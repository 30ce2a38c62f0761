"""Bad input is refused with a message that names the place, before any model loads, and leaves nothing behind."""

import json
import time
from pathlib import Path

import pytest

from moslim import models
from moslim.cli import main
from moslim.config import load_config
from moslim.objectives import ObjectiveSet
from moslim.policy.train import RLConfig
from moslim.preferences import Preference
from moslim.reward.mapping import check_method

REPO = Path(__file__).resolve().parents[1]
RL_DEMO = REPO / "configs" / "demo" / "rl.yaml"


def rl_config(tmp_path, rm_dir, *overrides):
    return load_config(RLConfig, RL_DEMO, [f"reward.model={rm_dir}", f"train.output_dir={tmp_path / 'run'}",
                                           *overrides])


@pytest.fixture
def rm_dir(tmp_path):
    folder = tmp_path / "rm"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"")
    return folder


@pytest.mark.parametrize("overrides, message", [
    (["reward.method=zscor"], r"reward\.method: unknown mapping method 'zscor'; did you mean 'zscore'"),
    (["reward.method=zscore", "reward.options={foo: 1}"],
     r"reward\.options \['foo'\]: .*foo.*takes stats, normalize, running"),
    (["reward.method=zscore", "reward.options={stats: bogus}"], r"reward\.options .*unknown stats 'bogus'"),
    (["reward.method=expected_level", "reward.options={stats: class}"], r"reward\.options \['stats'\]"),
    (["reward.method=nowhere.module:fn"], r"cannot import 'nowhere\.module:fn'"),
])
def test_rl_mapping_mistakes_are_refused_before_loading(tmp_path, rm_dir, overrides, message):
    config = rl_config(tmp_path, rm_dir, *overrides)
    start = time.perf_counter()
    with pytest.raises(ValueError, match=message):
        config.check()
    assert time.perf_counter() - start < 2  # nothing loaded
    assert not (tmp_path / "run").exists()


def test_a_good_rl_config_passes_the_check(tmp_path, rm_dir):
    rl_config(tmp_path, rm_dir).check()  # the demo's own
    rl_config(tmp_path, rm_dir, "reward.method=zscore", "reward.options={stats: running, normalize: named}").check()


@pytest.mark.parametrize("overrides, message", [
    (["data.objective_weights={humour: 1}"], r"data: unknown objective 'humour'; valid objectives: helpfulness"),
    (["data.objective_weights={verbosity: -1}"], r"data: objective_weights\['verbosity'\] must be a finite number"),
    (["data.objective_weights={helpfulness: 0, harmlessness: 0}"], r"data: num_named=\(1, 2\) must lie within 0-1"),
    (["data.level_weights={verbosity: [1, 1]}"], r"data: level_weights\['verbosity'\] must be 4 non-negative"),
])
def test_rl_sampling_mistakes_are_refused_against_the_reward_models_objectives(tmp_path, rm_dir, overrides,
                                                                              message):
    (rm_dir / "objectives.yaml").write_text((REPO / "src/moslim/assets/demo/objectives.yaml").read_text())
    config = rl_config(tmp_path, rm_dir, *overrides)
    config.check()
    with pytest.raises(ValueError, match=message):
        config.check_inputs()
    assert not (tmp_path / "run").exists()


def test_appropriate_harmlessness_needs_a_factored_reward_model_before_loading(tmp_path, rm_dir):
    rl_config(tmp_path, rm_dir, "reward.factored_as=appropriate").check()
    with pytest.raises(ValueError, match=r"reward.factored_as='appropriate' needs a reward model with a factored"):
        rl_config(tmp_path, rm_dir, "reward.factored_as=appropriate").check_inputs()
    (rm_dir / "config.json").write_text('{"factored": "harmlessness"}')
    rl_config(tmp_path, rm_dir, "reward.factored_as=appropriate").check_factored_as(rm_dir / "config.json")
    with pytest.raises(ValueError, match="factored_as"):
        rl_config(tmp_path, rm_dir, "reward.factored_as=fit")


def test_rl_train_with_a_missing_reward_model_fails_cleanly(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    code = main(["rl", "train", "--config", str(RL_DEMO), "reward.model=runs/nope", "train.output_dir=runs/rl"])
    assert code == 2
    assert "reward.model folder runs/nope does not exist" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "rl").exists()


def test_rm_train_rejects_negative_steps_and_writes_no_run(tmp_path, capsys):
    out = tmp_path / "rm"
    code = main(["rm", "train", "--config", str(REPO / "configs" / "demo" / "rm.yaml"), "train.max_steps=-5",
                 f"output_dir={out}"])
    assert code == 2
    assert "override 'train.max_steps=-5': -5 is out of range; expected a number >= 1" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("reference, message", [
    ("./missing", "does not exist"), ("a/b/c", "does not exist"), ("~/surely-not-here-moslim", "does not exist"),
])
def test_check_reference_refuses_missing_local_folders(reference, message):
    with pytest.raises(ValueError, match=message):
        models.check_reference(reference)


def test_check_reference_tells_a_local_path_from_a_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    models.check_reference("gpt2")  # a bare hub id
    models.check_reference("org/name")  # no ./org folder: could be a hub id
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # offline, a hub id must be in the cache: refused before any loading
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    for hub_id in ("nope", "org/name"):
        with pytest.raises(ValueError, match=f"policy '{hub_id}' is neither a built-in nor a local folder.*offline"):
            models.check_reference(hub_id, "policy")
    (tmp_path / "runs").mkdir()
    with pytest.raises(ValueError, match="model folder runs/rm does not exist"):
        models.check_reference("runs/rm")
    (tmp_path / "runs" / "rm").mkdir()
    with pytest.raises(ValueError, match="no config.json"):
        models.check_reference("runs/rm")
    (tmp_path / "runs" / "rm" / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="holds no weights .*interrupted save"):
        models.check_reference("runs/rm")
    (tmp_path / "runs" / "rm" / "model.safetensors").write_bytes(b"")
    models.check_reference("runs/rm")


def test_rm_score_refuses_a_missing_model_and_bad_responses_and_writes_nothing(tmp_path, capsys):
    data = tmp_path / "in.jsonl"
    out = tmp_path / "out.jsonl"
    data.write_text(json.dumps({"prompt": "q", "response": "a"}) + "\n")
    assert main(["rm", "score", "--model", str(tmp_path / "nope"), "--input", str(data), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
    rm = tmp_path / "rm"
    rm.mkdir()
    (rm / "config.json").write_text("{}")
    (rm / "model.safetensors").write_bytes(b"")
    # The messages `moslim data validate` gives for the same rows (one rule for both commands).
    for bad, message in ((3, "field 'response' must be a string"), ("", "empty response"),
                         (None, "missing field 'response'")):
        data.write_text(json.dumps({"prompt": "q", "response": "a"}) + "\n"
                        + json.dumps({"prompt": "q", "response": bad}) + "\n")
        assert main(["rm", "score", "--model", str(rm), "--input", str(data), "--out", str(out)]) == 2
        assert f"in.jsonl:2: {message}" in capsys.readouterr().err
        assert not out.exists()


def test_eval_refuses_a_missing_policy_before_generating(tmp_path, rm_dir):
    from moslim.evaluation.runner import EvalConfig, run_evaluation

    cfg = load_config(EvalConfig, REPO / "configs" / "demo" / "eval.yaml",
                      [f"policy={tmp_path / 'nope'}", f"reward_model={rm_dir}", f"out={tmp_path / 'eval'}"])
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"policy folder .*nope does not exist"):
        run_evaluation(cfg, show_progress=False)
    assert time.perf_counter() - start < 2
    assert not (tmp_path / "eval").exists()


def test_a_repeated_objective_in_a_preference_is_refused():
    objectives = ObjectiveSet.from_dict({"objectives": [{"name": "verbosity", "levels": ["a", "b", "c"]}]})
    with pytest.raises(ValueError, match="names 'verbosity' twice"):
        Preference.parse("verbosity=1, verbosity=2", objectives)


def test_check_method_accepts_callables_and_their_options():
    def custom(probs, targets, mask, num_levels, *, scale=1.0):
        return probs[..., 0].sum(-1) * scale

    assert check_method(custom, {"scale": 2.0}) is custom
    with pytest.raises(ValueError, match="takes scale"):
        check_method(custom, {"sclae": 2.0})


class SafetensorError(Exception):
    """Stands in for safetensors' own error type (matched by name, as the real one is a Rust exception)."""


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), SafetensorError("I/O error: full")])
def test_a_failed_save_names_the_folder_and_keeps_the_previous_one(tmp_path, monkeypatch, tiny_encoder_dir,
                                                                   tiny_tokenizer, error):
    from moslim.reward.model import MultiHeadRewardModel, save_reward_model

    objectives = ObjectiveSet.from_dict({"objectives": [{"name": "verbosity", "levels": ["a", "b"]}]})
    model = MultiHeadRewardModel.from_backbone(tiny_encoder_dir, objectives, seed=0)
    target = save_reward_model(model, tiny_tokenizer, tmp_path / "rm")
    before = sorted(p.name for p in target.iterdir())

    def full(*args, **kwargs):
        raise error
    monkeypatch.setattr(type(model), "save_pretrained", full)
    with pytest.raises(OSError, match=rf"could not save {target} .*unchanged. Is the disk full\?"):
        save_reward_model(model, tiny_tokenizer, target)
    assert sorted(p.name for p in target.iterdir()) == before
    assert [p.name for p in tmp_path.iterdir()] == ["rm"]  # no temp folder left behind
    models.check_reference(target)


def test_generate_rejects_an_objective_named_twice_before_loading_the_policy(tmp_path, capsys):
    code = main(["generate", "--policy", str(tmp_path / "not-loaded"), "--prefer", "verbosity=1,verbosity=3", "hi"])
    assert code == 2
    assert "names 'verbosity' twice" in capsys.readouterr().err


def test_rm_train_with_a_missing_backbone_or_data_file_fails_before_making_a_run(tmp_path, capsys):
    config = str(REPO / "configs" / "demo" / "rm.yaml")
    out = tmp_path / "run"
    assert main(["rm", "train", "--config", config, f"output_dir={out}",
                 f"model.backbone={tmp_path / 'no' / 'model'}"]) == 2
    assert f"model.backbone folder {tmp_path / 'no' / 'model'} does not exist" in capsys.readouterr().err
    assert main(["rm", "train", "--config", config, f"output_dir={out}", "data.train=nope.jsonl"]) == 2
    assert "data.train: file nope.jsonl does not exist" in capsys.readouterr().err
    assert not out.exists()


def test_a_json_preference_needs_integer_levels_and_survives_deep_nesting():
    with pytest.raises(ValueError, match="must be an integer, got 1.5"):
        Preference.parse('{"verbosity": 1.5}')
    with pytest.raises(ValueError, match="names 'verbosity' twice"):
        Preference.parse('{"verbosity": 1, "verbosity": 2}')
    with pytest.raises(ValueError, match="not valid JSON|JSON object"):
        Preference.parse("{" + "[" * 100_000)


def test_check_method_binds_a_users_callable_without_running_it_on_a_toy_input():
    def three_heads(probs, targets, mask, num_levels):
        return probs[:, 2, 0]  # fine on the real reward model's three heads, an IndexError on a one-head toy

    assert check_method(three_heads, {}) is three_heads
