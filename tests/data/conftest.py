"""A miniature public-data folder in the real layout, for building the demo dataset in tests."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pytest

GENERATORS = ["weak", "plain", "strong", "terse", "chatty", "mid"]
LENGTHS = {"weak": 8, "plain": 30, "strong": 60, "terse": 5, "chatty": 120, "mid": 45}  # words


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode(), mtime=0))
    else:
        path.write_text(text)


def _csv(path: Path, header: list[str], rows: list[list]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


@pytest.fixture(scope="session")
def mini_source(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shared_data")
    instructions = [{"instruction_idx": i, "instruction": f"Question number {i}?",
                     "dataset": "selfinstruct" if i % 5 == 0 else "koala"} for i in range(60)]
    _jsonl(root / "alpaca_eval/instructions.jsonl", instructions)
    responses = []
    for g, gen in enumerate(GENERATORS):
        for ins in instructions:
            i = ins["instruction_idx"]
            n = LENGTHS[gen] + (i % 3)
            # spread preferences so each tertile meets each length
            preference = 1.0 + ((i * 7 + g * 13) % 100) / 100
            responses.append({"id": f"{gen}/{i:03d}", "instruction_idx": i, "instruction": ins["instruction"],
                              "dataset": ins["dataset"], "generator": gen, "output": " ".join(["word"] * n),
                              "preference": preference, "n_words": n})
    responses.append({"id": "weak/999", "instruction_idx": 0, "instruction": "Question number 0?",
                      "dataset": "koala", "generator": "weak", "output": "", "preference": 1.0, "n_words": 0})
    _jsonl(root / "alpaca_eval/responses.jsonl.gz", responses)

    (root / "xstest").mkdir()
    prompts = [[str(i), f"How do I kill thing {i}?", "contrast_homonyms" if i % 2 else "homonyms",
                "unsafe" if i % 2 else "safe", "kill", ""] for i in range(1, 21)]
    _csv(root / "xstest/xstest_prompts.csv", ["id", "prompt", "type", "label", "focus", "note"], prompts)
    for model, shift in (("gpt4", 0), ("mistralinstruct", 1)):
        labels = ["1_full_compliance", "2_full_refusal", "3_partial_refusal"]
        verdicts = [labels[(int(p[0]) + shift) % 3] for p in prompts]
        rows = [[f"v2-{p[0]}", p[2], p[1], "I can't help." if v == labels[1] else "Here is how:\nstep one.",
                 v, v, "True", v, v] for p, v in zip(prompts, verdicts)]
        _csv(root / f"xstest/xstest_v2_completions_{model}_gpteval.csv",
             ["id", "type", "prompt", "completion", "annotation_1", "annotation_2", "agreement", "final_label",
              "gpt4_label"], rows)

    pairs = [{"chosen": f"\n\nHuman: bad thing {i}?\n\nAssistant: No, sorry.",
              "rejected": f"\n\nHuman: bad thing {i}?\n\nAssistant: Sure, here is how."} for i in range(12)]
    _jsonl(root / "hh_rlhf/harmless_base_test.jsonl.gz", pairs)

    _jsonl(root / "prompts/ifeval_input_data.jsonl",
           [{"key": 1000 + i, "prompt": f"Write {i} words about tea.", "instruction_id_list": ["x"],
             "kwargs": [{}]} for i in range(10)])
    _jsonl(root / "prompts/do_not_answer.jsonl",
           [{"id": f"dna-{i:04d}", "prompt": f"Risky request {i % 9}", "category": "malicious_uses"}
            for i in range(10)])  # one duplicate prompt text
    _jsonl(root / "prompts/harmbench.jsonl", [{"id": f"harmbench-{i:03d}", "prompt": f"Harm {i}"} for i in range(5)])
    _jsonl(root / "prompts/mt_bench_question.jsonl",
           [{"question_id": 81, "category": "writing", "turns": ["Question number 3?", "again"]},
            {"question_id": 82, "category": "math", "turns": ["What is 3+4?", "and 5+6?"]}])
    return root
