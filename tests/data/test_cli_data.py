"""`moslim data validate | stats | build-demo`, end to end."""

from __future__ import annotations

import json
from pathlib import Path

from moslim.cli import main
from moslim.data.demo import FILES

ASSETS = Path(__file__).parent.parent / "assets"
OBJECTIVES = str(ASSETS / "objectives.yaml")


def test_validate_reports_counts_for_a_good_file(capsys):
    assert main(["data", "validate", str(ASSETS / "data/examples.jsonl"), "--objectives", OBJECTIVES]) == 0
    assert "examples (a row has 'response'): read 3 rows, kept 3, rejected 0" in capsys.readouterr().out


def test_validate_stops_at_the_first_bad_row_with_file_and_line(tmp_path, capsys):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"prompt": "q", "response": "a", "labels": {"verbosity": 7}}) + "\n")
    assert main(["data", "validate", str(path), "--objectives", OBJECTIVES]) == 2
    assert f"{path}:1: level 7 for 'verbosity' is out of range 0-3" in capsys.readouterr().err


def test_validate_can_skip_bad_rows_into_a_rejects_file(tmp_path, capsys):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"prompt": "q", "response": "a"}) + "\n{bad\n")
    rejects = tmp_path / "rejects.jsonl"
    code = main(["data", "validate", str(path), "--objectives", OBJECTIVES, "--kind", "examples",
                 "--skip-bad", "--rejects", str(rejects)])
    assert code == 1
    assert "read 2 rows, kept 1, rejected 1" in capsys.readouterr().out
    assert json.loads(rejects.read_text())["where"] == f"{path}:2"


def test_validate_reads_flat_columns_through_column_options(tmp_path, capsys):
    path = tmp_path / "t.csv"
    path.write_text("question,answer,len\nq,a,2\n")
    args = ["data", "validate", str(path), "--objectives", OBJECTIVES, "--column", "prompt=question",
            "--column", "response=answer", "--column", "verbosity=len"]
    assert main(args) == 0
    assert "examples (a row has 'answer'): read 1 rows, kept 1" in capsys.readouterr().out


def test_stats_prints_levels_and_writes_a_histogram(tmp_path, capsys):
    png = tmp_path / "h.png"
    assert main(["data", "stats", str(ASSETS / "data/examples.csv"), "--objectives", OBJECTIVES,
                 "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert "verbosity" in out and "100%" in out  # both rows carry verbosity
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_build_demo_writes_every_file(mini_source, tmp_path, capsys):
    assert main(["data", "build-demo", "--source", str(mini_source), "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(FILES)
    assert "built in" in capsys.readouterr().out


def test_stats_tallies_prompts_by_origin_and_safety(tmp_path, capsys):
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"q{i}", "tags": {"origin": "xstest", "safety": s}}) + "\n"
                            for i, s in enumerate(["safe", "unsafe", "unsafe"])))
    assert main(["data", "stats", str(path), "--objectives", OBJECTIVES]) == 0
    out = capsys.readouterr().out
    assert "3 prompts" in out
    assert [line.split() for line in out.splitlines() if "xstest" in line] == [
        ["│", "xstest", "│", "safe", "│", "1", "│"], ["│", "xstest", "│", "unsafe", "│", "2", "│"]]


def test_validate_decides_the_kind_from_every_row_not_the_first(tmp_path, capsys):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"prompt": "q"}) + "\n" + json.dumps({"prompt": "q", "response": "a"}) + "\n")
    assert main(["data", "validate", str(path), "--objectives", OBJECTIVES]) == 2
    assert f"{path}:1" in capsys.readouterr().err  # read as examples: the first row has no response
    csv_path = tmp_path / "t.csv"
    csv_path.write_text("prompt,verbosity\nq,1\n")
    assert main(["data", "validate", str(csv_path), "--objectives", OBJECTIVES]) == 2
    assert "response" in capsys.readouterr().err  # labels but no response column: examples, rejected
    csv_path.write_text("prompt,answer\nq,a\n")  # the answers under another name: not passed as prompts
    assert main(["data", "validate", str(csv_path), "--objectives", OBJECTIVES]) == 2
    err = capsys.readouterr().err
    assert f"{csv_path}: no row has 'response'" in err and "--column response=answer" in err
    assert main(["data", "validate", str(csv_path), "--objectives", OBJECTIVES, "--kind", "prompts"]) == 0


def test_validate_says_why_it_chose_the_kind_and_refuses_empty_files(tmp_path, capsys):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"prompt": "q"}) + "\n")
    assert main(["data", "validate", str(prompts), "--objectives", OBJECTIVES]) == 0
    assert "prompts (no row has 'chosen', 'response' or an objective's label): read 1 rows" in capsys.readouterr().out
    for text in ("", "\n\n"):
        prompts.write_text(text)
        assert main(["data", "validate", str(prompts), "--objectives", OBJECTIVES]) == 2
        err = capsys.readouterr().err
        assert "the file is empty" in err or "no rows" in err


def test_rejects_keep_the_text_of_rows_that_did_not_parse(tmp_path, capsys):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"prompt": "q", "response": "a"}) + "\n{bad row\n")
    rejects = tmp_path / "rejects.jsonl"
    main(["data", "validate", str(path), "--objectives", OBJECTIVES, "--skip-bad", "--rejects", str(rejects)])
    assert json.loads(rejects.read_text())["row"] == "{bad row"


def test_a_truncated_gz_is_named_not_a_traceback(tmp_path, capsys):
    import gzip

    path = tmp_path / "train.jsonl.gz"
    data = gzip.compress(("".join(json.dumps({"prompt": f"q{i}", "response": "a " * 50}) + "\n"
                                  for i in range(200))).encode())
    path.write_bytes(data[: len(data) // 2])
    assert main(["data", "validate", str(path), "--objectives", OBJECTIVES]) == 2
    assert f"{path}" in (err := capsys.readouterr().err) and "ends early" in err


def test_validate_reads_the_file_once(tmp_path, capsys, monkeypatch):
    """The kind is detected from the same rows that are then parsed: one pass over the file, not two."""
    import moslim.data.readers as readers

    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"q{i}", "response": "a"}) + "\n" for i in range(3)))
    reads = []
    original = readers.iter_rows
    monkeypatch.setattr(readers, "iter_rows", lambda *a, **k: reads.append(a) or original(*a, **k))
    assert main(["data", "validate", str(path), "--objectives", OBJECTIVES]) == 0
    assert "read 3 rows, kept 3" in capsys.readouterr().out
    assert len(reads) == 1
