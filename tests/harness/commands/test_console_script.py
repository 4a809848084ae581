"""The ``harness`` command (harness/__main__.py): ``harness <command> [flags]`` and ``python -m harness <command>``
run ``python -m harness.<command> [flags]`` with the same flags and exit status; ``--help`` lists every command in one
line each; an unknown command is one sentence and exit status 2."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tomllib

import pytest

from harness import __main__ as console, check
from tests.conftest import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def commands_layer() -> list[str]:
    """The command modules, as the import-linter layers in pyproject.toml name them."""
    layers = next(c["layers"] for c in PYPROJECT["tool"]["importlinter"]["contracts"] if c["type"] == "layers")
    line = next(layer for layer in layers if "harness.evaluate" in layer)
    return [name.strip().removeprefix("harness.") for name in line.split(":")]


def run_python(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_every_command_module_is_a_subcommand_and_the_script_is_declared():
    assert sorted(console.COMMANDS) == sorted(commands_layer())
    assert len(commands_layer()) == 10
    for name in console.COMMANDS:
        assert callable(importlib.import_module(f"harness.{name}").main), name
    assert PYPROJECT["project"]["scripts"] == {"harness": "harness.__main__:main"}


def test_the_metadata_installs_the_harness_script(tmp_path, monkeypatch):
    from setuptools import build_meta
    monkeypatch.chdir(REPO)
    info = build_meta.prepare_metadata_for_build_wheel(str(tmp_path))
    entry_points = (tmp_path / info / "entry_points.txt").read_text()
    assert "[console_scripts]\nharness = harness.__main__:main\n" in entry_points


@pytest.mark.parametrize("name", sorted(console.COMMANDS))
def test_each_command_gets_its_flags_and_gives_back_its_status(name, monkeypatch):
    module = importlib.import_module(f"harness.{name}")
    calls = []

    def fake_main(argv=None):
        calls.append(argv)
        return 17

    monkeypatch.setattr(module, "main", fake_main)
    assert console.main([name, "--watch", "submissions/x", "--db", "a b.db"]) == 17
    assert calls == [["--watch", "submissions/x", "--db", "a b.db"]]
    assert console.main([name]) == 17 and calls[-1] == []


def test_help_lists_every_command_in_one_line(capsys):
    assert console.main(["--help"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.splitlines()
    assert lines[0] == "usage: harness <command> [flags]   (or: python -m harness.<command> [flags])"
    listed = lines[lines.index("commands:") + 1:]
    assert [line.split()[0] for line in listed] == list(console.COMMANDS)
    for line, summary in zip(listed, console.COMMANDS.values(), strict=True):
        assert line.split(None, 1)[1] == summary and len(line) <= 120, line
    assert console.main(["-h"]) == 0 and capsys.readouterr().out == out


def test_no_command_prints_the_list_on_stderr_and_fails(capsys):
    assert console.main([]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("usage: harness <command> [flags]") and "  evaluate  " in err


def test_an_unknown_command_is_one_sentence_and_status_2(capsys):
    assert console.main(["evalute", "--watch"]) == 2
    assert capsys.readouterr() == ("", "error: there is no command 'evalute'; did you mean `evaluate`? the commands "
                                       "are evaluate, check, verify, export, versions, train, migrate, preview, "
                                       "sheet, insights (`harness --help`).\n")
    assert console.main(["zzz"]) == 2
    assert capsys.readouterr().err == ("error: there is no command 'zzz'; the commands are evaluate, check, verify, "
                                       "export, versions, train, migrate, preview, sheet, insights "
                                       "(`harness --help`).\n")


def test_a_real_command_answers_the_same_through_the_script(tmp_path, capsys):
    entry = tmp_path / "odd"
    entry.mkdir()
    (entry / "entry.toml").write_text("constructor = 3\n")
    assert check.main([str(entry)]) == 1
    direct = capsys.readouterr()
    assert console.main(["check", str(entry)]) == 1
    assert capsys.readouterr() == direct
    assert direct.out == f"error: {entry / 'entry.toml'}: 'constructor' must be a table ([constructor]), not int.\n"


def test_a_bad_flag_exits_as_argparse_does():
    with pytest.raises(SystemExit) as direct:
        check.main(["--no-such-flag"])
    with pytest.raises(SystemExit) as through:
        console.main(["check", "--no-such-flag"])
    assert through.value.code == direct.value.code == 2


@pytest.mark.slow
def test_python_dash_m_harness_runs_the_commands():
    listed = run_python("-m", "harness", "--help")
    assert listed.returncode == 0 and "  versions  " in listed.stdout
    helped = run_python("-m", "harness", "evaluate", "--help")
    assert helped.returncode == 0
    direct = run_python("-m", "harness.evaluate", "--help").stdout
    # the same flags; each usage line names the command as it was typed
    assert helped.stdout.startswith("usage: harness evaluate [-h]")
    assert direct.startswith("usage: python -m harness.evaluate [-h]")
    assert helped.stdout.split("\n\n", 1)[1] == direct.split("\n\n", 1)[1]  # all after the usage lines
    assert "--watch" in helped.stdout
    wrong = run_python("-m", "harness", "evalute")
    assert (wrong.returncode, wrong.stdout) == (2, "")
    assert wrong.stderr.startswith("error: there is no command 'evalute'; did you mean `evaluate`?")
    assert len(wrong.stderr.strip().splitlines()) == 1
    version = run_python("-m", "harness", "--version")
    assert version.returncode == 0 and version.stdout.startswith("harness 0.")


@pytest.mark.slow
def test_each_commands_usage_names_it_as_it_was_typed():
    # what the installed script does (pip writes it): sys.argv[0] is its path, then main()
    script = "import sys; sys.argv[0] = '/venv/bin/harness'; from harness.__main__ import main; sys.exit(main())"
    for name in console.COMMANDS:
        through = run_python("-c", script, name, "--help")
        assert through.returncode == 0 and through.stdout.startswith(f"usage: harness {name} "), (name, through)
        direct = run_python("-m", f"harness.{name}", "--help")
        assert direct.returncode == 0 and direct.stdout.startswith(f"usage: python -m harness.{name} "), name
    assert cli_prog_as("/usr/local/bin/harness", "check") == "harness check"
    assert cli_prog_as("/x/harness/__main__.py", "check") == "harness check"
    assert cli_prog_as("/x/harness/check.py", "check") == "python -m harness.check"


def cli_prog_as(argv0: str, command: str) -> str:
    from harness import cli
    saved = sys.argv[:]
    sys.argv[:] = [argv0]
    try:
        return cli.prog(command)
    finally:
        sys.argv[:] = saved


@pytest.mark.parametrize(("how", "status"), [(("-m", "harness", "--help"), 141),
                                             (("-m", "harness", "verify", "--help"), 0),
                                             (("-m", "harness.verify", "--help"), 0)],
                         ids=["list", "subcommand", "module"])
def test_output_into_a_pipe_closed_early_ends_quietly(how, status):
    """``harness --help | head -1``: the reader goes away before the command writes; no traceback, status 141 (as the
    shell gives a command killed by SIGPIPE), or 0 where argparse prints a command's help (it ignores a closed
    pipe). Unbuffered, as in CI, so that each line meets the closed pipe."""
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, *how], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # before the command has started writing
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == status and err == ""


def test_another_broken_pipe_is_still_an_error():
    """Only the reader of the output going away ends a command quietly: a pipe or socket of its own that breaks
    (a cluster's connection) is shown as it was."""
    from harness import cli

    def breaks() -> int:
        raise BrokenPipeError(32, "Broken pipe")

    with pytest.raises(BrokenPipeError):
        cli.ended(breaks)
    assert cli.ended(lambda: 7) == 7
