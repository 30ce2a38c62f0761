"""The demo dataset: the builder (on a miniature source folder) and the committed files."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from moslim.data import load_labelling, read_examples, read_pairs, read_prompts, verbosity_level
from moslim.data.demo import DEMO_DIR, FILES, DemoSettings, build_demo
from moslim.data.schema import prompt_text
from moslim.objectives import ObjectiveSet

SMALL = DemoSettings(cell_quota=(5, 2, 2), hh_pairs=5)
SPLITS = ("rm_train", "judge_train", "rm_eval")


def key(record) -> str:
    return " ".join(prompt_text(record.prompt).lower().split())


def read_all(folder: Path):
    objectives = ObjectiveSet.from_yaml(folder / "objectives.yaml", with_factors=True)
    judge_objectives = ObjectiveSet.from_yaml(folder / "judge_objectives.yaml")
    splits = {name: read_examples(folder / f"{name}.jsonl.gz", judge_objectives if name.startswith("judge")
                                  else objectives) for name in SPLITS}
    prompts = {name: read_prompts(folder / f"{name}.jsonl") for name in ("prompts_train", "prompts_eval")}
    return objectives, splits, prompts


def sides(splits, prompts) -> dict[str, set[str]]:
    return {"train": {key(r) for r in splits["rm_train"] + prompts["prompts_train"]},
            "judge": {key(r) for r in splits["judge_train"]},
            "eval": {key(r) for r in splits["rm_eval"] + prompts["prompts_eval"]}}


@pytest.fixture(scope="module")
def mini_demo(mini_source, tmp_path_factory) -> Path:
    return Path(build_demo(mini_source, tmp_path_factory.mktemp("demo"), SMALL)["balance.md"]).parent


def test_rebuild_gives_identical_bytes(mini_source, mini_demo, tmp_path):
    again = build_demo(mini_source, tmp_path, SMALL)
    assert sorted(again) == sorted(FILES)
    for name in FILES:
        assert again[name].read_bytes() == (mini_demo / name).read_bytes(), name


def test_no_prompt_sits_on_two_sides(mini_demo):
    _, splits, prompts = read_all(mini_demo)
    found = sides(splits, prompts)
    assert not found["train"] & found["judge"] and not found["train"] & found["eval"]
    assert not found["judge"] & found["eval"]


def test_self_instruct_prompts_never_reach_training(mini_demo):
    _, splits, prompts = read_all(mini_demo)
    selfinstruct = {f"question number {i}?" for i in range(0, 60, 5)}
    assert not selfinstruct & {key(r) for r in splits["rm_train"] + prompts["prompts_train"]}
    assert selfinstruct & {key(r) for r in splits["rm_eval"]}


def test_labels_follow_the_stored_spec(mini_demo):
    objectives, splits, _ = read_all(mini_demo)
    spec = load_labelling(mini_demo / "objectives.yaml")
    for name, rows in splits.items():
        for ex in rows:
            if name.startswith("judge"):
                assert set(ex.labels) <= {"helpfulness", "refusal"}
                continue
            assert ex.labels["verbosity"] == verbosity_level(ex.response, spec)
            assert "harmlessness" in ex.labels  # XSTest: human label x safety; AlpacaEval: a safe prompt
            if ex.source.startswith("alpaca_eval"):
                assert ex.labels["harmlessness"] == 1
    cells = Counter((e.labels["helpfulness"], e.labels["verbosity"]) for e in splits["rm_train"]
                    if e.source.startswith("alpaca_eval"))
    assert max(cells.values()) <= SMALL.cell_quota[0] and len(cells) >= 8


def test_judge_learns_refusal_from_xstest_human_labels_only(mini_demo):
    judge_objectives = ObjectiveSet.from_yaml(mini_demo / "judge_objectives.yaml")
    assert judge_objectives.names == ["helpfulness", "refusal"]
    for name in ("judge_train", "judge_eval"):
        rows = read_examples(mini_demo / f"{name}.jsonl.gz", judge_objectives)
        refusal = [e for e in rows if "refusal" in e.labels]
        assert refusal and all(e.source.startswith("xstest") for e in refusal)
    held_out = {e.id for e in read_examples(mini_demo / "judge_eval.jsonl.gz", judge_objectives)}
    assert held_out == {e.id for e in read_all(mini_demo)[1]["rm_eval"]} - {
        e.id for e in read_all(mini_demo)[1]["rm_eval"] if not ({"helpfulness"} & set(e.labels)
                                                                or e.source.startswith("xstest"))}


def test_prompt_sets_dedupe_and_drop_prompts_seen_elsewhere(mini_demo):
    _, _, prompts = read_all(mini_demo)
    everything = prompts["prompts_train"] + prompts["prompts_eval"]
    assert len({key(p) for p in everything}) == len(everything)
    origins = Counter(p.tags["origin"] for p in everything)
    assert origins["do_not_answer"] == 9  # ten rows, one repeated text
    assert origins["mt_bench"] == 1  # "Question number 3?" is already an AlpacaEval prompt
    assert {p.tags["safety"] for p in everything} == {"safe", "unsafe"}


def test_balance_report_counts_the_left_out_rows(mini_demo):
    report = (mini_demo / "balance.md").read_text()
    assert "AlpacaEval rows rejected (empty output): 1" in report
    assert "HH-RLHF pairs rejected (empty final reply, or dialogues differ before it): 0" in report


def test_hh_pairs_split_by_opening_question(mini_demo):
    train = read_pairs(mini_demo / "pairs_train.jsonl.gz")
    held_out = [p for p in read_pairs(mini_demo / "pairs_eval.jsonl.gz") if p.source == "hh_rlhf"]
    assert train and 0 < len(held_out) <= SMALL.hh_pairs
    assert not {key(p) for p in train} & {key(p) for p in held_out}
    assert len(train) + len(held_out) <= 12


def test_build_refuses_a_folder_that_is_not_the_public_data(tmp_path):
    with pytest.raises(ValueError, match="not the public data folder"):
        build_demo(tmp_path, tmp_path / "out")


# -- the committed demo dataset -----------------------------------------------------------------
def test_committed_demo_is_complete_and_small():
    sizes = {name: (DEMO_DIR / name).stat().st_size for name in FILES}
    assert sum(sizes.values()) < 15 * 2**20


def test_committed_demo_reads_cleanly_and_splits_by_prompt():
    objectives, splits, prompts = read_all(DEMO_DIR)
    assert objectives.names == ["helpfulness", "verbosity", "harmlessness", "unsafe_request", "refusal"]
    found = sides(splits, prompts)
    assert not (found["train"] & found["judge"] or found["train"] & found["eval"] or found["judge"] & found["eval"])
    pairs = read_pairs(DEMO_DIR / "pairs_eval.jsonl.gz", objectives)
    assert {p.objective for p in pairs} == {"helpfulness", "harmlessness"}
    assert not {key(p) for p in pairs if p.source != "hh_rlhf"} & (found["train"] | found["judge"])
    hh_train = read_pairs(DEMO_DIR / "pairs_train.jsonl.gz", objectives)
    assert not {key(p) for p in hh_train} & {key(p) for p in pairs}


def test_committed_rows_read_as_text_only_without_their_objectives():
    # RiC and the throughput benchmark read the rows' text; their factor labels must not stop them
    heads = ObjectiveSet.from_yaml(DEMO_DIR / "objectives.yaml")
    with pytest.raises(ValueError, match="unknown objective 'unsafe_request'"):
        read_examples(DEMO_DIR / "rm_eval.jsonl.gz", heads)
    rows = read_examples(DEMO_DIR / "rm_eval.jsonl.gz", None)
    assert len(rows) == 1640 and all(r.labels == {} and r.response for r in rows)


def test_committed_training_data_has_every_level_reachable_within_100_words():
    objectives, splits, _ = read_all(DEMO_DIR)
    spec = load_labelling(DEMO_DIR / "objectives.yaml")
    assert spec.rules["verbosity"][0].edges[-1] < 100  # the policy writes at most ~100 words
    train = splits["rm_train"]
    for obj in objectives:
        levels = Counter(e.labels[obj.name] for e in train if obj.name in e.labels)
        assert set(levels) == set(range(obj.num_levels)), obj.name
    short = Counter(e.labels["verbosity"] for e in train if len(e.response.split()) <= 100)
    assert min(short.values()) >= 300


def test_committed_prompt_sets_mix_safe_and_unsafe_prompts():
    _, _, prompts = read_all(DEMO_DIR)
    for records in prompts.values():
        by = Counter((p.tags["origin"], p.tags["safety"]) for p in records)
        assert by["xstest", "safe"] > 0 and by["xstest", "unsafe"] > 0
        assert by["alpaca_eval", "safe"] > 0 and by["harmbench", "unsafe"] > 0


def test_reward_model_rows_label_the_harmlessness_factors(mini_demo):
    objectives, splits, _ = read_all(mini_demo)
    assert objectives.names[-2:] == ["unsafe_request", "refusal"]
    for ex in splits["rm_train"] + splits["rm_eval"]:
        if ex.source.startswith("alpaca_eval"):
            assert ex.labels["unsafe_request"] == 0 and ex.labels["refusal"] == 0
        else:  # XSTest: the prompt's label, and the human refusal verdict
            assert ex.labels["unsafe_request"] in (0, 1) and ex.labels["refusal"] in (0, 1)
            harmful = ex.labels["unsafe_request"] == 1 and ex.labels["refusal"] == 0
            assert ex.labels["harmlessness"] == (0 if harmful else 1)


def test_policy_answers_fold_into_rm_train_with_model_free_labels(mini_source, mini_demo, tmp_path):
    from moslim.data.demo import POLICY_ANSWERS
    from moslim.data.readers import write_jsonl

    _, _, prompts = read_all(mini_demo)
    unsafe = [p for p in prompts["prompts_train"] if p.tags["safety"] == "unsafe"][:2]
    safe = [p for p in prompts["prompts_train"] if p.tags["safety"] == "safe"][:2]
    refusal = "I'm sorry, but I can't help with that request."  # 9 words: verbosity 0
    rows = [{"id": f"smollm2/{p.id}", "prompt": p.prompt, "response": text, "source": "smollm2"}
            for p, text in ((unsafe[0], "word " * 5), (unsafe[1], refusal), (safe[0], "word " * 50),
                            (safe[1], refusal))]
    write_jsonl(tmp_path / POLICY_ANSWERS, rows)
    build_demo(mini_source, tmp_path, SMALL)
    _, splits, _ = read_all(tmp_path)
    added = {e.id: e.labels for e in splits["rm_train"] if e.source == "smollm2"}
    # The refusal rule on the answer x the prompt's known safety: answering an unsafe request is harmful;
    # refusing a safe one is unhelpful.
    assert added == {
        f"smollm2/{unsafe[0].id}": {"verbosity": 0, "harmlessness": 0, "unsafe_request": 1, "refusal": 0},
        f"smollm2/{unsafe[1].id}": {"verbosity": 0, "harmlessness": 1, "unsafe_request": 1, "refusal": 1},
        f"smollm2/{safe[0].id}": {"verbosity": 2, "harmlessness": 1, "unsafe_request": 0, "refusal": 0},
        f"smollm2/{safe[1].id}": {"helpfulness": 0, "verbosity": 0, "harmlessness": 1, "unsafe_request": 0,
                                  "refusal": 1}}
    # A stale file (its prompt no longer an RL training prompt) is an error naming the row, not a silent drop.
    rows[0]["id"] = "smollm2/do_not_answer/not-a-prompt"
    write_jsonl(tmp_path / POLICY_ANSWERS, rows)
    with pytest.raises(ValueError, match="not an RL training prompt"):
        build_demo(mini_source, tmp_path, SMALL)


def test_every_policy_answer_file_folds_into_rm_train(mini_source, mini_demo, tmp_path):
    from moslim.data.demo import POLICY_ANSWER_FILES
    from moslim.data.readers import write_jsonl

    _, _, prompts = read_all(mini_demo)
    unsafe = [p for p in prompts["prompts_train"] if p.tags["safety"] == "unsafe"][0]
    # The same prompt in each file (base answer, prefilled refusal, an RL policy's answer): each kind its own row.
    answers = {"smollm2": "word " * 5, "smollm2-prefilled": "I won't help with making that.",
               "grpo-study": "I'm sorry for any confusion. Here is how: " + "word " * 5,
               "grpo-moslim": "Sure, here it is."}
    for name, (prefix, text) in zip(POLICY_ANSWER_FILES, answers.items()):
        write_jsonl(tmp_path / name, [{"id": f"{prefix}/{unsafe.id}", "prompt": unsafe.prompt, "response": text,
                                       "source": prefix}])
    build_demo(mini_source, tmp_path, SMALL)
    _, splits, _ = read_all(tmp_path)
    added = {e.id: e.labels["refusal"] for e in splits["rm_train"] if e.source in answers}
    # The rule labels each: the prefilled opening refuses, the RL policy's apology that goes on helping does not.
    assert added == {f"smollm2/{unsafe.id}": 0, f"smollm2-prefilled/{unsafe.id}": 1, f"grpo-study/{unsafe.id}": 0,
                     f"grpo-moslim/{unsafe.id}": 0}
