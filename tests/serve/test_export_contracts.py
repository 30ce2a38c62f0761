"""`moslim data export`: rows in verl's and OpenRLHF's dataset shapes that round-trip into moslim's reward
entry points and give the in-process MOSLIM reward (the one `moslim rl train` optimises).

verl's columns follow its `examples/data_preprocess/gsm8k.py` (data_source, prompt, ability, reward_model
{style, ground_truth}, extra_info) and its reward call `compute_score(data_source, solution_str, ground_truth,
extra_info)`; OpenRLHF's follow `openrlhf/datasets/prompts_dataset.py` (`data[input_key]` through the chat
template, `data[label_key]` passed as is) and its remote reward body {"query", "prompts", "labels"}.
"""

from __future__ import annotations

import json

import pytest

from moslim.cli import main
from moslim.policy.reward_fn import MoslimReward
from moslim.preferences import Preference, PromptTemplate
from moslim.serve import verl_reward

QUESTIONS = ["how can i help the cat ?", "what is the capital city of france ?", "write a short answer about water ."]
ANSWERS = ["safe good answer", "paris is the capital", "water is good and safe and helpful ."]


@pytest.fixture
def rl_config(tmp_path, serve_rm_dir):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"q{i}", "prompt": q, "source": "test", "tags": {}}) + "\n"
                               for i, q in enumerate(QUESTIONS)), encoding="utf-8")
    config = tmp_path / "rl.yaml"
    config.write_text(f"# moslim rl train --config {config}\nreward:\n  model: {serve_rm_dir}\ndata:\n"
                      f"  prompts: {prompts}\n  num_named: [1, 3]\n  seed: 3\n", encoding="utf-8")
    return config


@pytest.fixture
def moslim_reward(serve_rm_dir):
    from moslim.reward.scorer import RewardScorer

    return MoslimReward(RewardScorer.from_pretrained(serve_rm_dir, device="cpu"))


def export(fmt: str, config, out) -> None:
    assert main(["data", "export", "--format", fmt, "--config", str(config), "--out", str(out)]) == 0


def test_verl_rows_round_trip_into_compute_score(tmp_path, rl_config, serve_rm_dir, moslim_reward, engine):
    out = tmp_path / "verl" / "train.parquet"
    export("verl", rl_config, out)
    from datasets import load_dataset

    rows = list(load_dataset("parquet", data_files=str(out), split="train"))  # as verl's RLHFDataset reads it
    assert len(rows) == len(QUESTIONS)
    for row in rows:
        assert set(row) == {"data_source", "prompt", "ability", "reward_model", "extra_info"}
        assert set(row["reward_model"]) == {"style", "ground_truth"}
        assert [m["role"] for m in row["prompt"]] == ["system", "user"]
        # the policy reads the same preference the reward is computed for
        system = row["prompt"][0]["content"]
        assert PromptTemplate().parse(system, engine.objectives).to_string() == row["extra_info"]["preference"]
    # verl's naive reward manager adds num_turns and rollout_reward_scores to extra_info before the call
    scored = [verl_reward.compute_score(data_source=row["data_source"], solution_str=answer,
                                        ground_truth=row["reward_model"]["ground_truth"],
                                        extra_info={**row["extra_info"], "num_turns": 2, "rollout_reward_scores": {}},
                                        model=str(serve_rm_dir))
              for row, answer in zip(rows, ANSWERS)]
    expected = moslim_reward(prompts=[r["extra_info"]["question"] for r in rows], completions=ANSWERS,
                             preference=[r["extra_info"]["preference"] for r in rows])
    assert [s["score"] for s in scored] == pytest.approx(expected, abs=1e-5)
    assert len(set(r["extra_info"]["preference"] for r in rows)) > 1
    # ground_truth alone (extra_info without a preference) gives the same score
    info = {k: v for k, v in rows[0]["extra_info"].items() if k != "preference"}
    alone = verl_reward.compute_score("moslim", ANSWERS[0], rows[0]["reward_model"]["ground_truth"], info,
                                      model=str(serve_rm_dir))
    assert alone["score"] == pytest.approx(expected[0], abs=1e-5)


@pytest.mark.parametrize("send_labels", [True, False], ids=["label", "system-message"])
def test_openrlhf_rows_round_trip_into_get_reward(tmp_path, rl_config, client, engine, moslim_reward, send_labels):
    out = tmp_path / "openrlhf" / "prompts.jsonl"
    export("openrlhf", rl_config, out)
    from datasets import load_dataset

    rows = list(load_dataset("json", data_files=str(out), split="train"))  # OpenRLHF's blending_datasets
    # OpenRLHF's preprocess_data with --data.apply_chat_template, then query = prompt + response + EOS
    prompts = [engine.tokenizer.apply_chat_template(r["input"], tokenize=False, add_generation_prompt=True)
               for r in rows]
    queries = [p + a + engine.tokenizer.eos_token for p, a in zip(prompts, ANSWERS)]
    labels = [r["label"] for r in rows] if send_labels else [""] * len(rows)
    body = client.post("/get_reward", json={"query": queries, "prompts": prompts, "labels": labels}).json()
    labels_read = [json.loads(r["label"]) for r in rows]
    expected = moslim_reward(prompts=[label["question"] for label in labels_read], completions=ANSWERS,
                             preference=[Preference.of(label["preferences"]).to_string() for label in labels_read])
    assert body["rewards"] == pytest.approx(expected, abs=1e-5)


def test_export_errors_name_the_fix(tmp_path, rl_config, capsys):
    assert main(["data", "export", "--format", "verl", "--config", str(rl_config), "--out",
                 str(tmp_path / "train.jsonl")]) == 2
    assert "a verl export is written as .parquet (got .jsonl)" in capsys.readouterr().err
    assert main(["data", "export", "--format", "openrlhf", "--config", str(rl_config), "--out",
                 str(tmp_path / "p.jsonl"), "reward.model=" + str(tmp_path)]) == 2
    assert "set data.objectives=FILE.yaml" in capsys.readouterr().err
    assert not (tmp_path / "p.jsonl").exists()


def test_engine_recipes_parse_and_name_the_exported_fields():
    import subprocess
    from pathlib import Path


    root = Path(__file__).resolve().parents[2] / "configs"
    scripts = sorted((root / "verl").glob("*.sh")) + sorted((root / "openrlhf").glob("*.sh"))
    assert len(scripts) == 3
    for script in scripts:
        subprocess.run(["bash", "-n", str(script)], check=True)
        text = script.read_text()
        assert text.startswith(f"#!/usr/bin/env bash\n# bash configs/{script.parent.name}/{script.name}")
        assert "moslim data export --format " + script.parent.name in text
    for name in ("grpo.sh", "ppo.sh"):
        text = (root / "verl" / name).read_text()
        assert "reward.custom_reward_function.name=compute_score" in text and hasattr(verl_reward, "compute_score")
        assert "data.prompt_key=prompt" in text
    text = (root / "openrlhf" / "ppo.sh").read_text()
    assert "--data.input_key input --data.label_key label --data.apply_chat_template" in text
    assert text.count("/get_reward") >= 1
