"""scripts/build_length_rows.py: sentence prefixes, one per lower verbosity level, labelled by the word count."""

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "build_length_rows.py"


@pytest.fixture(scope="module")
def module(load_script):
    return load_script(SCRIPT)


def test_prefixes_end_at_sentence_ends_and_line_breaks_only(module):
    text = 'He said "stop." Then he left! Why?\nA list\n- one item, e.g. this. End'
    assert module.sentence_prefixes(text) == [
        'He said "stop."', 'He said "stop." Then he left!', 'He said "stop." Then he left! Why?',
        'He said "stop." Then he left! Why?\nA list',
        'He said "stop." Then he left! Why?\nA list\n- one item, e.g.',
        'He said "stop." Then he left! Why?\nA list\n- one item, e.g. this.']
    assert module.sentence_prefixes("No sentence end at all") == []
    assert module.sentence_prefixes("One sentence.") == []  # the whole text is not a prefix of itself


def test_each_lower_level_gets_its_longest_prefix_labelled_by_the_word_count(module, demo_labelling):
    from moslim.data.labelling import verbosity_level

    sentences = [f"Sentence number {i} has exactly seven words." for i in range(14)]  # 7 words each, 98 in all
    row = {"id": "smollm2/x/1", "prompt": "q", "response": " ".join(sentences), "source": "smollm2-135m-instruct",
           "labels": {"verbosity": 3, "harmlessness": 1, "unsafe_request": 1, "refusal": 0, "helpfulness": 2}}
    cuts = module.length_rows(row, demo_labelling)
    # bins <= 15 / 16-40 / 41-70 / > 70 words: the longest prefixes of 7k words in levels 0, 1, 2 are 14, 35, 70
    assert [len(c["response"].split()) for c in cuts] == [14, 35, 70]
    assert [c["labels"]["verbosity"] for c in cuts] == [0, 1, 2]
    for cut in cuts:
        assert cut["labels"] == {"unsafe_request": 1, "verbosity": verbosity_level(cut["response"], demo_labelling)}
        assert row["response"].startswith(cut["response"]) and cut["response"].endswith(".")
        assert cut["id"] == f"smollm2/x/1/cut{len(cut['response'].split())}"
        assert cut["source"] == "smollm2-135m-instruct+cut" and cut["prompt"] == "q"


def test_a_short_answer_gives_nothing_below_level_zero(module, demo_labelling):
    row = {"id": "a", "prompt": "q", "response": "Yes. No. Maybe.", "labels": {"verbosity": 0}}
    assert module.length_rows(row, demo_labelling) == []


def test_the_command_appends_cut_rows_of_the_chosen_sources_only(tmp_path):
    from moslim.data.readers import iter_rows, write_jsonl

    long = " ".join(f"This is sentence {i} of a long answer." for i in range(12))  # 8 words each
    rows = [{"id": "keep/1", "prompt": "q", "response": long, "source": "alpaca_eval/m", "labels": {"verbosity": 3}},
            {"id": "cut/1", "prompt": "q", "response": long, "source": "smollm2-135m-instruct",
             "labels": {"verbosity": 3}}]
    write_jsonl(tmp_path / "train.jsonl.gz", rows)
    out = tmp_path / "out" / "rm_train.jsonl.gz"
    printed = subprocess.run([sys.executable, str(SCRIPT), "--train", str(tmp_path / "train.jsonl.gz"),
                              "--sources", "smollm2-135m-instruct", "--out", str(out)],
                             capture_output=True, text=True, check=True).stdout
    written = [row for _, row in iter_rows(out)]
    assert written[:2] == rows
    assert [r["id"] for r in written[2:]] == ["cut/1/cut8", "cut/1/cut40", "cut/1/cut64"]
    assert "2 rows + 3 cut ones (verbosity levels 1 / 1 / 1 / 0)" in printed
    bad = subprocess.run([sys.executable, str(SCRIPT), "--train", str(tmp_path / "train.jsonl.gz"),
                          "--sources", "nowhere", "--out", str(out)], capture_output=True, text=True)
    assert bad.returncode == 2 and "no rows of source nowhere" in bad.stderr


def test_shortest_also_keeps_each_levels_lower_end_own_level_included(module, demo_labelling):
    sentences = [f"Sentence number {i} has exactly seven words." for i in range(14)]  # prefixes of 7, 14, ..., 91
    row = {"id": "r", "prompt": "q", "response": " ".join(sentences), "labels": {"verbosity": 3}}
    cuts = module.length_rows(row, demo_labelling, shortest=True)
    # level 0: 7 and 14 words; level 1: 21 (shortest) and 35 (longest); level 2: 42 and 70; level 3 (the row's
    # own): its shortest prefix, 77 words, only
    assert [len(c["response"].split()) for c in cuts] == [7, 14, 21, 35, 42, 70, 77]
    assert [c["labels"]["verbosity"] for c in cuts] == [0, 0, 1, 1, 2, 2, 3]
    assert len({c["id"] for c in cuts}) == len(cuts)
    assert [len(c["response"].split()) for c in module.length_rows(row, demo_labelling)] == [14, 35, 70]
