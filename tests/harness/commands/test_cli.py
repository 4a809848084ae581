"""The commands' shared face (harness/cli.py): one ``--db``, ``--device`` with its default stated, and a problem the
user can fix printed as ``error: <the sentence, exactly>`` with the command's exit status."""

from __future__ import annotations

import io

import pytest

from harness import check, cli, evaluate, export, insights, migrate, verify, versions
from harness.errors import HarnessError

SENTENCE = "entry.toml: 'constructor' must be a table ([constructor]), not int [/x]."


def test_run_passes_the_status_through_and_turns_a_harness_error_into_one_line():
    stream = io.StringIO()
    assert cli.run(lambda: 7, stream=stream) == 7 and stream.getvalue() == ""

    def fails():
        raise HarnessError(SENTENCE)

    assert cli.run(fails, stream=stream) == 2
    assert stream.getvalue() == f"error: {SENTENCE}\n"  # brackets are text, not markup
    assert cli.run(fails, status=1, stream=io.StringIO()) == 1


def test_run_goes_to_stderr_by_default_and_lets_other_exceptions_through(capsys):
    def fails():
        raise HarnessError("one sentence.")

    assert cli.run(fails) == 2
    assert capsys.readouterr() == ("", "error: one sentence.\n")
    with pytest.raises(ZeroDivisionError):
        cli.run(lambda: 1 // 0)
    assert cli.run(lambda: int("x"), errors=(ValueError,)) == 2
    assert capsys.readouterr().err.startswith("error: invalid literal for int()")


@pytest.mark.parametrize("main", [evaluate.main, verify.main, export.main, versions.main, insights.main, migrate.main])
def test_every_command_with_a_database_says_the_same_about_db(main, capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "SQLAlchemy URL or SQLite path (default: $LEADERBOARD_DB or leaderboard.db)" in \
        " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("main, default", [(evaluate.main, "auto"), (check.main, "cpu"), (verify.main, "cpu")])
def test_device_keeps_each_commands_default_and_says_it(main, default, capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"--device {{auto,cpu,cuda}} where models run: cpu, cuda, or auto (cuda when there is one) " \
           f"(default: {default})" in help_text


def test_check_prints_the_sentence_whole(tmp_path, capsys):
    entry = tmp_path / "odd"
    entry.mkdir()
    (entry / "entry.toml").write_text("constructor = 3\n")
    assert check.main([str(entry)]) == 1
    out = capsys.readouterr().out
    assert out == f"error: {entry / 'entry.toml'}: 'constructor' must be a table ([constructor]), not int.\n"


def test_migrate_says_why_it_cannot_open_the_database(tmp_path, capsys):
    assert migrate.main(["--db", "postgresql+psycopg://club:club@127.0.0.1:1/club"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("error: cannot open the database ")
