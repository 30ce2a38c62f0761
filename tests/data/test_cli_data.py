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
    assert "examples: read 3 rows, kept 3, rejected 0" in capsys.readouterr().out


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
    assert "examples: read 1 rows, kept 1" in capsys.readouterr().out


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
