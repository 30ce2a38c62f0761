"""End to end: `moslim rl train --config ...` then `moslim generate` on its output."""

from __future__ import annotations

import json

import pytest
import yaml

from moslim.cli import main
from moslim.config import to_dict


def test_rl_train_then_generate_from_the_command_line(tmp_path, make_config, tiny_causal_lm_dir, tiny_rm_dir,
                                                      prompts_file, capsys):
    config = to_dict(make_config(tiny_causal_lm_dir, tiny_rm_dir, prompts_file, tmp_path / "run"))
    path = tmp_path / "rl.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["rl", "train", "--config", str(path), "trl.max_steps=1", "--no-resume"]) == 0
    out = capsys.readouterr().out
    assert "GRPO: 1 steps" in out and "policy saved to" in out
    final = tmp_path / "run" / "final"
    summary = json.loads((tmp_path / "run" / "moslim_run.json").read_text())
    assert summary["global_step"] == 1 and summary["config"]["trl"]["max_steps"] == 1

    assert main(["generate", "--policy", str(final), "--prefer", "verbosity=1", "--max-new-tokens", "4",
                 "--num-samples", "2", "what is water ?"]) == 0
    assert capsys.readouterr().out.count("--- sample") == 2

    rows = [{"id": "a", "prompt": "what is water ?", "preference": "helpfulness=2"},
            {"id": "b", "prompt": "list three good things .", "preference": {"verbosity": 0}},
            {"id": "c", "prompt": "how can i help you ?"}]
    inp, outp = tmp_path / "in.jsonl", tmp_path / "out" / "completions.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["generate", "--policy", str(final), "--input", str(inp), "--out", str(outp),
                 "--prefer", "harmlessness=1", "--max-new-tokens", "3", "--temperature", "0"]) == 0
    written = [json.loads(line) for line in outp.read_text().splitlines()]
    assert [w["id"] for w in written] == ["a", "b", "c"]
    assert [w["preference"] for w in written] == ["helpfulness=2", "verbosity=0", "harmlessness=1"]
    assert all(len(w["completions"]) == 1 for w in written)


def test_bad_config_is_a_clear_cli_error(tmp_path, capsys):
    path = tmp_path / "rl.yaml"
    path.write_text("trian: {}\n")
    assert main(["rl", "train", "--config", str(path)]) == 2
    assert "did you mean 'train'" in capsys.readouterr().err


def test_generate_needs_a_question_or_an_input_file(capsys):
    assert main(["generate", "--policy", "x"]) == 2
    assert "either a question or --input" in capsys.readouterr().err


def test_generate_refuses_the_old_engine_name_with_the_new_one(capsys):
    assert main(["generate", "--policy", "x", "--engine", "hf", "hi"]) == 2
    assert "--engine='hf' was renamed to 'stock'" in capsys.readouterr().err


@pytest.mark.parametrize("argv, old, new", [
    (["generate", "--policy", "x", "--input", "in.jsonl", "--output", "o.jsonl"], "--output", "--out"),
    (["rm", "score", "--model", "x", "--input", "in.jsonl", "--output", "o.jsonl"], "--output", "--out"),
    (["eval", "--samples", "2"], "--samples", "--num-samples")])
def test_renamed_flags_are_refused_with_their_new_name(argv, old, new, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert f"{old} was renamed to {new}" in capsys.readouterr().err


def test_a_ppo_section_without_ppo_is_a_clear_cli_error(tmp_path, capsys):
    path = tmp_path / "rl.yaml"
    path.write_text("ppo: {vf_coef: 0.5}\n")
    assert main(["rl", "train", "--config", str(path)]) == 2
    assert "train.algorithm=ppo" in capsys.readouterr().err
