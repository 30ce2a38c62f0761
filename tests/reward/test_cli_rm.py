"""`moslim rm train | eval | score` end to end on a tiny config."""

from __future__ import annotations

import json

import yaml

from moslim.cli import main
from moslim.reward.train import RUN_FILE


def test_rm_train_eval_score_end_to_end(tiny_rm_config, tmp_path, capsys, rm_data):
    from moslim.config import save_config

    config_path = tmp_path / "rm.yaml"
    save_config(tiny_rm_config, config_path)
    out = tmp_path / "cli-rm"
    assert main(["rm", "train", "--config", str(config_path), f"output_dir={out}", "train.max_steps=2"]) == 0
    assert json.loads((out / RUN_FILE).read_text())["steps"] == 2
    assert "verbosity" in capsys.readouterr().out

    assert main(["rm", "eval", "--model", str(out), "--data", str(rm_data["eval"]), "--pairs",
                 str(rm_data["pairs"]), "--out", str(tmp_path / "eval"), "--max-length", "64"]) == 0
    printed = capsys.readouterr().out
    assert "±1 acc" in printed and "harmlessness" in printed
    assert (tmp_path / "eval" / "metrics.json").exists()

    scored = tmp_path / "scored.jsonl"
    assert main(["rm", "score", "--model", str(out), "--input", str(rm_data["train"]), "--out", str(scored),
                 "--max-length", "64"]) == 0
    rows = [json.loads(line) for line in scored.read_text().splitlines()]
    assert len(rows) == 24 and rows[0]["id"] == "ex0"
    assert len(rows[0]["probs"]["verbosity"]) == 4 and len(rows[0]["probs"]["harmlessness"]) == 2
    assert rows[0]["levels"]["verbosity"] == max(range(4), key=rows[0]["probs"]["verbosity"].__getitem__)


def test_rm_train_rejects_unknown_config_key_with_a_hint(tmp_path, capsys):
    config_path = tmp_path / "rm.yaml"
    config_path.write_text(yaml.safe_dump({"train": {"max_step": 3}}))
    assert main(["rm", "train", "--config", str(config_path)]) == 2
    assert "did you mean 'max_steps'" in capsys.readouterr().err


def test_rm_eval_without_data_or_pairs_is_an_error(tmp_path, capsys):
    assert main(["rm", "eval", "--model", str(tmp_path)]) == 2
    assert "--data" in capsys.readouterr().err


def test_rm_score_reports_the_line_of_a_bad_record(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "q", "response": "a"}\n{"prompt": "q"}\n')
    assert main(["rm", "score", "--model", str(tmp_path), "--input", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "bad.jsonl:2" in capsys.readouterr().err
