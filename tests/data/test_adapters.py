"""Source adapters, each on a small local file in its source's format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from moslim.data import adapters
from moslim.data.labelling import LabellingSpec, Rule

DATA = Path(__file__).parent.parent / "assets" / "data"


def test_helpsteer2_attributes_become_levels():
    examples = adapters.helpsteer2(DATA / "helpsteer2.jsonl")
    assert len(examples) == 3
    assert examples[1].labels == {"helpfulness": 4, "correctness": 4, "coherence": 4, "complexity": 2,
                                  "verbosity": 1}
    mapped = adapters.helpsteer2(DATA / "helpsteer2.jsonl", attributes={"helpfulness": "quality"})
    assert mapped[0].labels == {"quality": 3} and mapped[0].source == "helpsteer2"


def test_helpsteer2_rating_out_of_range_is_a_bad_row(tmp_path):
    row = json.loads((DATA / "helpsteer2.jsonl").read_text().splitlines()[0])
    row["verbosity"] = 5
    path = tmp_path / "hs.jsonl"
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(ValueError, match=r"hs.jsonl:1: field 'verbosity' must be an integer 0-4, got 5"):
        adapters.helpsteer2(path)


def test_ultrafeedback_ratings_one_to_five_become_levels_zero_to_four():
    examples = adapters.ultrafeedback(DATA / "ultrafeedback.jsonl")
    assert [e.response for e in examples] == ["Red and blue.", "Green."]  # one row, two completions
    assert examples[0].labels == {"helpfulness": 4, "honesty": 4, "instruction_following": 4, "truthfulness": 4}
    assert examples[1].labels == {"helpfulness": 1, "instruction_following": 0, "truthfulness": 2}  # N/A: missing
    assert examples[1].id.endswith("/m2")


def test_hh_rlhf_pairs_compare_the_final_reply_and_flag_diverging_dialogues(tmp_path):
    rejects = tmp_path / "rejects.jsonl"
    pairs = adapters.hh_rlhf(DATA / "hh_rlhf.jsonl", on_error="skip", rejects_path=rejects)
    assert len(pairs) == 2
    assert pairs[1].prompt == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello!"},
                               {"role": "user", "content": "tell me an insult"}]
    assert (pairs[1].chosen, pairs[1].rejected) == ("I'd rather not insult anyone.", "You are a fool.")
    assert pairs[0].objective == "harmlessness"
    (reject,) = [json.loads(x) for x in rejects.read_text().splitlines()]
    assert reject["where"].endswith("hh_rlhf.jsonl:3") and "differ before the final" in reject["error"]


def test_hh_rlhf_hub_id_passes_the_subset_folder(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(name, split, **options):  # isolates the dispatch; no network in tests
        calls.append((name, split, options))
        return datasets.Dataset.from_list([{"chosen": "\n\nHuman: a\n\nAssistant: b",
                                            "rejected": "\n\nHuman: a\n\nAssistant: c"}])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    (pair,) = adapters.hh_rlhf("Anthropic/hh-rlhf", split="test", data_dir="harmless-base")
    assert calls == [("Anthropic/hh-rlhf", "test", {"data_dir": "harmless-base"})]
    assert (pair.chosen, pair.rejected) == ("b", "c")


def test_pku_saferlhf_gives_safety_labels_and_both_kinds_of_pairs():
    examples, pairs = adapters.pku_saferlhf(DATA / "pku_saferlhf.jsonl")
    assert [e.labels for e in examples] == [{"harmlessness": 1}, {"harmlessness": 0},
                                            {"harmlessness": 1}, {"harmlessness": 1}]
    assert [(p.objective, p.chosen) for p in pairs] == [
        ("harmlessness", "Talk to them calmly or contact a mediator."),
        ("helpfulness", "Talk to them calmly or contact a mediator."),
        ("harmlessness", "4"), ("helpfulness", "4")]


def test_alpaca_eval_rows_carry_the_judge_preference_and_skip_empty_outputs():
    rows = adapters.alpaca_eval_responses(DATA / "alpaca_eval_responses.jsonl", on_error="skip")
    assert [r.id for r in rows] == ["alpaca_eval/modelA/000", "alpaca_eval/modelB/000"]
    assert rows[0].group == rows[1].group == "alpaca_eval/0"  # splits go by prompt
    spec = LabellingSpec({"helpfulness": [Rule("alpaca_eval_preference", bins="quantile", edges=(1.001, 1.5))],
                          "verbosity": [Rule("words", bins="fixed", edges=(15, 40, 70))]})
    assert [spec.label(r.signals, r.response) for r in rows] == [{"helpfulness": 0, "verbosity": 0},
                                                                 {"helpfulness": 2, "verbosity": 0}]
    with pytest.raises(ValueError, match=r"alpaca_eval_responses.jsonl:3: empty output"):
        adapters.alpaca_eval_responses(DATA / "alpaca_eval_responses.jsonl")


def test_xstest_verdict_combines_prompt_safety_and_the_human_label():
    rows = adapters.xstest_responses(DATA / "xstest_v2_completions_tiny_gpteval.csv", {"1": "safe", "2": "unsafe"})
    assert [(r.id, r.signals["xstest_verdict"]) for r in rows] == [
        ("xstest/tiny/1", "safe/full_compliance"), ("xstest/tiny/2", "unsafe/full_refusal")]
    assert rows[0].response.startswith("Use:\n\nkill -9 PID")
    with pytest.raises(ValueError, match="id 'v2-2' matches no XSTest prompt"):
        adapters.xstest_responses(DATA / "xstest_v2_completions_tiny_gpteval.csv", {"1": "safe"})


def test_prompt_sets_are_tagged_with_safety_and_origin(tmp_path):
    path = tmp_path / "mt.jsonl"
    path.write_text(json.dumps({"question_id": 81, "category": "writing", "turns": ["Write a poem.", "Shorter."]})
                    + "\n")
    (rec,) = adapters.prompt_set(path, "mt_bench", "safe", id_field="question_id", prompt_field="turns",
                                 tag_fields=("category",))
    assert (rec.id, rec.prompt, rec.tags) == ("mt_bench/81", "Write a poem.",
                                             {"safety": "safe", "origin": "mt_bench", "category": "writing"})
    xs = adapters.prompt_set(DATA / "xstest_prompts.csv", "xstest", "safe", tag_fields=("type",))
    assert [r.tags["type"] for r in xs] == ["homonyms", "contrast_homonyms"]


def test_prompt_ranks_are_percentiles_within_each_prompt_with_ties_averaged():
    def row(group: str, value: float) -> adapters.Scored:
        return adapters.Scored(id=f"{group}{value}", group=group, prompt="q", response="a", source="s",
                               signals={"p": value})

    rows = [row("a", 1.0), row("a", 1.9), row("a", 1.2), row("a", 1.2), row("a", 1.5), row("b", 1.3)]
    adapters.add_prompt_ranks(rows, "p", into="rank")
    # prompt a sorted: 1.0, 1.2, 1.2, 1.5, 1.9 -> positions 0, (1+2)/2, (1+2)/2, 3, 4 out of 4
    assert [r.signals["rank"] for r in rows] == [0.0, 1.0, 0.375, 0.375, 0.75, 0.5]
