"""scripts/build_policy_answers.py --kind moslim: several policies answer in turn, under the demo RL stage's
preferences, on training prompts only (generation replaced by a recorder: the sampling itself is tested in
tests/policy)."""

import gzip
import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def script(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("build_policy_answers", ROOT / "scripts" / "build_policy_answers.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "build_policy_answers", module)  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    return module


def test_moslim_kind_splits_prompts_between_policies_in_turn(script, monkeypatch, tmp_path):
    import moslim.policy.generate as generate

    calls = []

    def fake_generate(policy, questions, preferences, **kwargs):
        calls.append((policy, list(questions), [p.to_string() for p in preferences]))
        assert kwargs["objectives"] is None and kwargs.get("template") is None  # the policy's own wording
        return [[f"{policy} answers {q[:20]}"] for q in questions]

    monkeypatch.setattr(generate, "generate_completions", fake_generate)
    out = tmp_path / "answers.jsonl.gz"
    monkeypatch.setattr(sys, "argv", ["build_policy_answers.py", "--kind", "moslim", "--unsafe", "5", "--safe", "2",
                                      "--policy", "runs/a", "runs/b", "--out", str(out)])
    script.main()
    rows = [json.loads(line) for line in gzip.open(out, "rt")]
    assert [c[0] for c in calls] == ["runs/a", "runs/b"] and [len(c[1]) for c in calls] == [4, 3]
    assert len(rows) == 7 and len({r["id"] for r in rows}) == 7
    assert all(r["id"].startswith("grpo-moslim/") and r["source"] == "grpo-moslim-study-policy" for r in rows)
    # prompt i answered by policy i modulo 2, and each answer carries its own prompt's preference
    assert [r["response"].split()[0] for r in rows] == ["runs/a", "runs/b"] * 3 + ["runs/a"]
    preferences = [r["tags"]["preference"] for r in rows]
    assert all(p and "helpfulness" not in p and "harmlessness=0" not in p for p in preferences)
    assert sorted(r["tags"]["safety"] for r in rows) == ["safe"] * 2 + ["unsafe"] * 5

    from controllability_study import HARM_VALIDATION, split_prompts

    _, validation, harm_validation = split_prompts(0, 32, HARM_VALIDATION)
    held_out = {r.id for r in [*validation, *harm_validation]}
    assert not {r["id"].split("/", 1)[1] for r in rows} & held_out  # the study's validation prompts stay out


def test_rl_kind_takes_one_policy(script, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["build_policy_answers.py", "--kind", "rl", "--policy", "runs/a", "runs/b"])
    with pytest.raises(SystemExit):
        script.main()
