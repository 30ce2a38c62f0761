"""`moslim compare`: hypervolume against hand-computed fronts, comparability checks, the files it writes."""

from __future__ import annotations

import json

import pytest

from moslim.baselines.compare import compare_runs, hypervolume
from moslim.baselines.recipes import RUN_FILE


def test_hypervolume_matches_hand_computed_fronts():
    # one point: a rectangle 0.5 x 0.4
    assert hypervolume([[0.5, 0.4]], (0, 0)) == pytest.approx(0.2)
    # staircase (1, 0.2), (0.6, 0.5), (0.2, 0.9): 1*0.2 + 0.6*0.3 + 0.2*0.4 = 0.46; a dominated point adds nothing
    assert hypervolume([[1, 0.2], [0.6, 0.5], [0.2, 0.9], [0.5, 0.4]], (0, 0)) == pytest.approx(0.46)
    # another reference point: (1-0.1)*(0.2-0.1) + (0.6-0.1)*(0.5-0.2) + (0.2-0.1)*(0.9-0.5) = 0.09 + 0.15 + 0.04
    assert hypervolume([[1, 0.2], [0.6, 0.5], [0.2, 0.9]], (0.1, 0.1)) == pytest.approx(0.28)
    assert hypervolume([], (0, 0)) == 0.0


def test_hypervolume_beyond_two_objectives_uses_pymoo():
    # two boxes in 3-D: 1*1*0.5 + 0.5*0.5*1 - overlap 0.5*0.5*0.5 = 0.625
    assert hypervolume([[1, 1, 0.5], [0.5, 0.5, 1]], (0, 0, 0)) == pytest.approx(0.625)


def _run(folder, method, points, prompts=("q0", "q1"), budget=None):
    folder.mkdir(parents=True)
    run = {"method": method, "objectives": ["verbosity", "harmlessness"], "grid_points": 3, "prompts": list(prompts),
           "reference_point": [0.0, 0.0], "judge_of": {"verbosity": "exact", "harmlessness": "judge"},
           "points": [{"weights": [t, 1 - t], "achieved": a, "system": ""} for t, a in points],
           "following": {"verbosity": {"spearman": {"value": 0.5, "ci": [0.1, 0.9]},
                                       "hit_rate": {"value": 0.4, "ci": [0.2, 0.6]}}},
           "compute": {"training_runs": 1, "rl_steps": 10, "budget": budget, "serve_new_preference": "none"}}
    (folder / RUN_FILE).write_text(json.dumps(run))
    return folder


def test_compare_writes_every_file_with_each_methods_hypervolume(tmp_path):
    a = _run(tmp_path / "moslim", "moslim", [(0.0, [0.2, 0.9]), (0.5, [0.6, 0.5]), (1.0, [1.0, 0.2])])
    b = _run(tmp_path / "morlhf", "morlhf", [(0.0, [0.1, 0.8]), (1.0, [0.9, 0.1])], budget="equal_compute")
    result = compare_runs([a, b], tmp_path / "out")
    assert result["methods"]["MOSLIM"]["hypervolume"] == pytest.approx(0.46)
    # (0.9, 0.1), (0.1, 0.8): 0.9*0.1 + 0.1*0.7 = 0.16
    assert result["methods"]["MORLHF"]["hypervolume"] == pytest.approx(0.16)
    for name in ("compare.md", "compare.html", "compare.json", "compare-fronts.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0, name
    md = (tmp_path / "out" / "compare.md").read_text()
    assert "reference point (0.0, 0.0)" in md and "MOSLIM's hypervolume 0.460" in md and "+0.300 for MOSLIM" in md


def test_runs_on_other_prompts_are_not_compared(tmp_path):
    a = _run(tmp_path / "a", "moslim", [(0.0, [0.2, 0.9])])
    b = _run(tmp_path / "b", "ric", [(0.0, [0.2, 0.9])], prompts=("q7",))
    with pytest.raises(ValueError, match="its prompts .* differ from"):
        compare_runs([a, b], tmp_path / "out")


def test_a_run_without_its_marker_is_an_error_saying_what_to_run(tmp_path):
    (tmp_path / "half").mkdir()
    with pytest.raises(ValueError, match="no baseline_run.json; run `moslim baseline"):
        compare_runs([tmp_path / "half"], tmp_path / "out")


def test_cli_baseline_then_compare_end_to_end(tmp_path, baseline_config, capsys):
    """`moslim baseline` for two methods on a 3-point grid, then `moslim compare` over both."""
    import yaml

    from moslim.cli import main
    from moslim.config import to_dict

    runs = []
    for method, extra in (("prompt-only", []), ("soups", ["rl.moslim_steps=2"])):
        cfg = baseline_config(method, "grid.points=3", *extra)
        path = tmp_path / f"{method}.yaml"
        path.write_text(yaml.safe_dump(to_dict(cfg)))
        assert main(["baseline", method, "--config", str(path)]) == 0
        runs.append(cfg.out)
    out = capsys.readouterr().out
    assert "stage 1/3: train verbosity" in out and "hypervolume" in out
    assert main(["compare", *runs, "--out", str(tmp_path / "cmp")]) == 0
    saved = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert set(saved["methods"]) == {"prompt-only", "Rewarded Soups"}
    for entry in saved["methods"].values():
        assert entry["hypervolume"] == pytest.approx(hypervolume([p["achieved"] for p in entry["points"]], (0, 0)))


def test_cli_rejects_a_bad_config_value_with_its_place(tmp_path, capsys):
    from moslim.cli import main

    path = tmp_path / "bad.yaml"
    path.write_text("rl:\n  budget: equal_flops\n")
    assert main(["baseline", "morlhf", "--config", str(path)]) == 2
    assert "rl:budget: 'equal_flops' is not one of 'equal_compute', 'equal_steps'" in capsys.readouterr().err


def test_cli_takes_overrides_after_the_config(tmp_path, capsys):
    from moslim.cli import main

    path = tmp_path / "c.yaml"
    path.write_text("grid:\n  points: 11\n")
    assert main(["baseline", "morlhf", "--config", str(path), "rl.policies=12"]) == 2
    assert "rl.policies=12: at most grid.points=11 policies" in capsys.readouterr().err
