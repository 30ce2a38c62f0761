"""Readers: every format, column mapping, and each kind of bad row reported with file:line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moslim.data import Example, read_examples, read_pairs, read_prompts, write_jsonl
from moslim.data.readers import example_parser, load_records, prompt_parser, read_jsonl

DATA = Path(__file__).parent.parent / "assets" / "data"


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def good_row(**over) -> str:
    row = {"id": "x", "prompt": "Say hi.", "response": "Hi.", "labels": {"verbosity": 0}}
    row.update(over)
    return json.dumps(row)


def test_jsonl_examples_keep_chat_prompts_and_partial_labels(objectives):
    examples = read_examples(DATA / "examples.jsonl", objectives)
    assert [e.id for e in examples] == ["e1", "e2", "e3"]
    assert examples[0].labels == {"helpfulness": 2, "verbosity": 0}
    assert examples[1].prompt[1] == {"role": "user", "content": "Name a dog breed."}
    assert examples[1].labels == {"harmlessness": 1}  # the other heads are masked
    assert examples[2].labels == {} and examples[2].source == ""


def test_csv_reads_flat_label_columns_and_multiline_cells(objectives):
    examples = read_examples(DATA / "examples.csv", objectives)
    assert examples[0].response == "Line one.\nLine two."
    assert examples[0].labels == {"helpfulness": 1, "verbosity": 0}  # empty harmlessness cell = missing
    assert examples[1].labels == {"helpfulness": 2, "verbosity": 0, "harmlessness": 1}


def test_csv_error_names_the_line_a_multiline_record_starts_on(objectives, tmp_path):
    path = tmp_path / "t.csv"
    path.write_text('id,prompt,response,verbosity\na,"q","two\nlines",0\nb,"q","ok",9\n', encoding="utf-8")
    with pytest.raises(ValueError, match=rf"^{path}:4: level 9 for 'verbosity' is out of range 0-3$"):
        read_examples(path, objectives)


@pytest.mark.parametrize("line, message", [
    ('{"id": "x", "prompt": "q", ', r"t.jsonl:2: not valid JSON"),
    (good_row(response=None), r"t.jsonl:2: missing field 'response'"),
    (good_row(labels={"tone": 1}), r"t.jsonl:2: unknown objective 'tone' in labels; valid objectives: "
                                   r"helpfulness, verbosity, harmlessness"),
    (good_row(labels={"verbosity": 7}), r"^t.jsonl:2: level 7 for 'verbosity' is out of range 0-3$"),
    (good_row(labels={"verbosity": "high"}), r"t.jsonl:2: level 'high' for 'verbosity' is not an integer"),
    (good_row(response="   "), r"t.jsonl:2: empty response"),
    (good_row(prompt=""), r"t.jsonl:2: empty prompt"),
    (good_row(prompt=[{"role": "robot", "content": "x"}]), r"t.jsonl:2: prompt message 0 must be"),
    (good_row(labels=[1, 2]), r"t.jsonl:2: field 'labels' must be an object"),
    ("[1, 2]", r"t.jsonl:2: expected an object with named fields, got list"),
])
def test_bad_row_stops_with_file_line_and_reason(objectives, tmp_path, monkeypatch, line, message):
    monkeypatch.chdir(tmp_path)
    write_lines(tmp_path / "t.jsonl", [good_row(), line, good_row()])
    with pytest.raises(ValueError, match=message):
        read_examples("t.jsonl", objectives)


def test_skip_mode_writes_every_bad_row_with_its_reason(objectives, tmp_path):
    path = write_lines(tmp_path / "t.jsonl", [good_row(id="a"), "{oops", good_row(id="b", labels={"verbosity": 7}),
                                              "", good_row(id="c", response="")])
    rejects = tmp_path / "rejects.jsonl"
    result = load_records(path, example_parser(objectives), on_error="skip", rejects_path=rejects)
    assert (result.read, result.kept, len(result.rejected)) == (4, 1, 3)  # the blank line is not a row
    lines = [json.loads(x) for x in rejects.read_text().splitlines()]
    assert [x["where"] for x in lines] == [f"{path}:2", f"{path}:3", f"{path}:5"]
    assert "out of range 0-3" in lines[1]["error"] and lines[1]["row"]["id"] == "b"
    assert lines[0]["row"] == "{oops" and "not valid JSON" in lines[0]["error"]
    assert [e.id for e in read_examples(path, objectives, on_error="skip")] == ["a"]


def test_unknown_on_error_value_is_refused(objectives):
    with pytest.raises(ValueError, match="on_error must be one of raise, skip"):
        read_examples(DATA / "examples.jsonl", objectives, on_error="ignore")


def test_column_map_renames_fields_and_label_columns(objectives, tmp_path):
    path = write_lines(tmp_path / "t.jsonl", [json.dumps({"uid": 7, "question": "q?", "answer": "a.",
                                                          "verb": 2})])
    (ex,) = read_examples(path, objectives, column_map={"id": "uid", "prompt": "question",
                                                        "response": "answer", "verbosity": "verb"})
    assert (ex.id, ex.prompt, ex.response, ex.labels) == ("7", "q?", "a.", {"verbosity": 2})
    with pytest.raises(ValueError, match=r"u.jsonl:1: missing field 'response' \(column 'answer'\)"):
        read_examples(write_lines(tmp_path / "u.jsonl", [json.dumps({"question": "q"})]), objectives,
                      column_map={"prompt": "question", "response": "answer"})


def test_json_list_and_parquet_and_datasets_folder_read_alike(objectives, tmp_path):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [json.loads(x) for x in (DATA / "examples.jsonl").read_text().splitlines()]
    (tmp_path / "e.json").write_text(json.dumps(rows), encoding="utf-8")
    flat = [{"id": r["id"], "prompt": "q", "response": r["response"], "verbosity": i} for i, r in enumerate(rows)]
    pq.write_table(pa.Table.from_pylist(flat), tmp_path / "e.parquet")
    datasets.DatasetDict({"test": datasets.Dataset.from_list(flat)}).save_to_disk(str(tmp_path / "ds"))

    assert read_examples(tmp_path / "e.json", objectives) == read_examples(DATA / "examples.jsonl", objectives)
    from_parquet = read_examples(tmp_path / "e.parquet", objectives)
    assert [e.labels for e in from_parquet] == [{"verbosity": 0}, {"verbosity": 1}, {"verbosity": 2}]
    assert read_examples(tmp_path / "ds", objectives, split="test") == from_parquet
    with pytest.raises(ValueError, match="no split 'train'; splits: test"):
        read_examples(tmp_path / "ds", objectives)


def test_parquet_error_names_the_row(objectives, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([{"prompt": "q", "response": "a", "verbosity": 0},
                                         {"prompt": "q", "response": "a", "verbosity": 5}]), tmp_path / "e.parquet")
    with pytest.raises(ValueError, match=r"e.parquet:row 1: level 5 for 'verbosity' is out of range 0-3"):
        read_examples(tmp_path / "e.parquet", objectives)


def test_hub_id_goes_through_load_dataset(objectives, monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(name, split, **options):  # isolates the dispatch; no network in tests
        calls.append((name, split, options))
        return datasets.Dataset.from_list([{"prompt": "q", "response": "a", "labels": {"verbosity": 1}}])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    (ex,) = read_examples("someone/some-data", objectives, split="validation")
    assert calls == [("someone/some-data", "validation", {})]
    assert ex.id == "someone/some-data[validation]:row 0" and ex.labels == {"verbosity": 1}


def test_missing_path_that_is_not_a_hub_id_is_a_clear_error(objectives):
    with pytest.raises(ValueError, match="no such file or folder"):
        read_examples("nowhere/at/all.jsonl", objectives)


def test_pairs_and_prompts_validate_their_fields(objectives, tmp_path):
    pairs = write_lines(tmp_path / "p.jsonl", [
        json.dumps({"id": "p1", "prompt": "q", "chosen": "good", "rejected": "bad", "objective": "harmlessness"}),
        json.dumps({"id": "p2", "prompt": "q", "chosen": "good", "rejected": "bad", "objective": "tone"})])
    assert read_pairs(pairs)[1].objective == "tone"  # without an objective set, any name is kept
    with pytest.raises(ValueError, match=r"p.jsonl:2: unknown objective 'tone'"):
        read_pairs(pairs, objectives)
    prompts = write_lines(tmp_path / "q.jsonl", [json.dumps({"prompt": "hi", "tags": {"safety": "safe"}}),
                                                 json.dumps({"prompt": "hi", "tags": "safe"})])
    result = load_records(prompts, prompt_parser(), on_error="skip")
    assert result.items[0].tags == {"safety": "safe"} and result.items[0].id == f"{prompts}:1"
    assert result.rejected[0][1].startswith(f"{prompts}:2: field 'tags'")
    with pytest.raises(ValueError, match="q.jsonl:2"):
        read_prompts(prompts)


def test_gzip_output_is_byte_stable(tmp_path):
    rows = [Example(id="a", prompt="q", response="r", labels={"verbosity": 1})]
    first = write_jsonl(tmp_path / "a.jsonl.gz", rows).read_bytes()
    second = write_jsonl(tmp_path / "b.jsonl.gz", rows).read_bytes()
    assert first == second and first[4:8] == b"\0\0\0\0"  # gzip header mtime is zero


texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1).filter(str.strip)


@settings(max_examples=30, deadline=None)
@given(rows=st.lists(st.tuples(texts, texts, st.integers(0, 2), st.none() | st.integers(0, 3)), max_size=5))
def test_examples_survive_a_write_read_round_trip(objectives, tmp_path_factory, rows):
    examples = [Example(id=f"r{i}", prompt=p, response=r,
                        labels={"helpfulness": h, **({"verbosity": v} if v is not None else {})}, source="t")
                for i, (p, r, h, v) in enumerate(rows)]
    path = write_jsonl(tmp_path_factory.mktemp("rt") / "x.jsonl.gz", examples)
    assert read_examples(path, objectives) == examples


def test_unreachable_hub_dataset_is_a_clear_error(objectives, monkeypatch):
    import datasets

    def offline(name, split, **options):
        raise ConnectionError(f"Couldn't reach '{name}' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(ValueError, match=r"someone/data: could not load split 'train' from the Hugging Face hub"):
        read_examples("someone/data", objectives)


def test_read_jsonl_round_trips_and_names_the_bad_line(tmp_path):
    rows = [{"a": 1}, {"b": [2, "x"]}]
    assert read_jsonl(write_jsonl(tmp_path / "r.jsonl.gz", rows)) == rows
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"a": 1}\n\n{"a": \n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:3: not valid JSON"):
        read_jsonl(bad)
