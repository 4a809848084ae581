"""competition.toml: parsing, one-sentence errors, deadline time zones and the reveal rule."""

from __future__ import annotations

from datetime import datetime

import pytest

from harness.common import competition
from harness.common.competition import CompetitionConfigError, load, parse
from tests.conftest import REPO


def test_the_repository_config_is_valid_and_its_deadline_is_paris_time():
    rules = load(REPO / "competition.toml")
    assert rules.title.startswith("MNIST club")
    # 23:59 in Paris in January is 22:59 UTC (CET = UTC+1), worked out by hand
    assert rules.deadline_utc == datetime(2027, 1, 10, 22, 59)
    assert rules.primary == "guest_accuracy" and rules.tie_break == ("mnist_accuracy", "guest_log_loss")


def test_missing_default_file_means_built_in_rules(tmp_path, monkeypatch):
    monkeypatch.delenv("COMPETITION_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    rules = load()
    assert rules.deadline is None and rules.reveal == "organiser" and rules.entries_per_member == "several"
    assert rules.max_entry_bytes == 2_000_000_000
    assert rules.source == "built-in defaults"


def test_a_named_file_that_does_not_exist_is_an_error(tmp_path):
    with pytest.raises(CompetitionConfigError, match="does not exist; create it"):
        load(tmp_path / "nope.toml")


def test_environment_variable_names_the_file(tmp_path, monkeypatch):
    path = tmp_path / "rules.toml"
    path.write_text('title = "Winter cup"\n')
    monkeypatch.setenv("COMPETITION_CONFIG", str(path))
    assert load().title == "Winter cup"


@pytest.mark.parametrize("text, message", [
    ('title = "x"\ndeadlin = 2027-01-01T00:00:00Z\n', "unknown key 'deadlin'"),
    ('deadline = 2027-01-10T23:59:00\n', "has no time zone; add an offset"),
    ('deadline = 2027-01-10\n', "has no time of day"),
    ('deadline = "next friday"\n', "is not a date and time"),
    ('timezone = "Mars/Olympus"\n', "is not a time zone name"),
    ('reveal = "soon"\n', "'reveal' = 'soon' is not one of"),
    ('reveal = "after-deadline"\n', "needs a 'deadline'"),
    ('entries_per_member = 2\n', "must be \"one\" or \"several\""),
    ('[ranking]\nprimary = "params"\n', "ranking.primary = 'params' must be one of"),
    ('[ranking]\ntie_break = ["speed"]\n', "ranking.tie_break has 'speed'"),
    ('[ranking]\nprimary = "mnist_accuracy"\ntie_break = ["mnist_accuracy"]\n', "repeats the primary metric"),
    ('[ranking]\nalpha = 0.1\n', "unknown key ranking.alpha"),
    ('title = ""\n', "'title' must be a non-empty string"),
    ('title = "unclosed\n', "is not valid TOML"),
    ('max_entry_gb = "2"\n', "'max_entry_gb' = '2' must be a positive number of gigabytes, such as 2 or 0.5."),
    ('max_entry_gb = 0\n', "'max_entry_gb' = 0 must be a positive number"),
    ('max_entry_gb = -1.5\n', "'max_entry_gb' = -1.5 must be a positive number"),
    ('max_entry_gb = inf\n', "'max_entry_gb' = inf must be a positive number"),
    ('max_entry_gb = nan\n', "'max_entry_gb' = nan must be a positive number"),
    ('max_entry_gb = true\n', "'max_entry_gb' = True must be a positive number"),
    ('[dashboard]\nwarm_memory = "lots"\n', "dashboard.warm_memory = 'lots' is not a size; write bytes"),
    ('[dashboard]\nwarm_memory = "2 GB of it"\n', "dashboard.warm_memory = '2 GB of it' is not a size"),
    ('[dashboard]\nwarm_memory = "2 TB"\n', "dashboard.warm_memory = '2 TB' is not a size"),
    ('[dashboard]\nwarm_memory = 0\n', "dashboard.warm_memory = 0 is not a size"),
    ('[dashboard]\nwarm_memory = nan\n', "dashboard.warm_memory = nan is not a size"),
    ('[dashboard]\nwarm_memory = true\n', "dashboard.warm_memory = True is not a size"),
    ('[dashboard]\nwarm = "2 GiB"\n', "unknown key dashboard.warm; the key is warm_memory."),
    ('dashboard = 3\n', "'dashboard' must be a table"),
])
def test_invalid_files_give_one_sentence_naming_the_problem(tmp_path, text, message):
    path = tmp_path / "competition.toml"
    path.write_text(text)
    with pytest.raises(CompetitionConfigError) as info:
        load(path)
    text_of_error = str(info.value)
    assert message in text_of_error and str(path) in text_of_error
    assert "\n" not in text_of_error.strip()


def test_deadline_offsets_and_zones_agree():
    with_offset = parse({"deadline": datetime.fromisoformat("2027-07-01T12:00:00+02:00")})
    with_zone = parse({"deadline": "2027-07-01T12:00:00", "timezone": "Europe/Paris"})  # CEST = UTC+2 in July
    utc = parse({"deadline": "2027-07-01T10:00:00Z"})
    assert with_offset.deadline_utc == with_zone.deadline_utc == utc.deadline_utc == datetime(2027, 7, 1, 10, 0)
    assert with_zone.is_late(datetime(2027, 7, 1, 10, 0, 1)) and not with_zone.is_late(datetime(2027, 7, 1, 10, 0))
    assert not parse({}).is_late(datetime(2100, 1, 1))
    assert with_zone.local(datetime(2027, 7, 1, 10, 0)).hour == 12


@pytest.mark.parametrize("reveal, flag, now, expected", [
    ("organiser", False, datetime(2030, 1, 1), False),
    ("organiser", True, datetime(2000, 1, 1), True),
    ("hidden", True, datetime(2030, 1, 1), False),
    ("revealed", False, datetime(2000, 1, 1), True),
    ("after-deadline", False, datetime(2027, 1, 10, 22, 58), False),
    ("after-deadline", False, datetime(2027, 1, 10, 23, 0), True),
])
def test_reveal_rule(reveal, flag, now, expected):
    rules = parse({"reveal": reveal, "deadline": "2027-01-10T22:59:00+00:00"})
    assert rules.guest_revealed(flag, now) is expected


def test_evaluate_reports_an_invalid_config_in_one_sentence(tmp_path, capsys):
    from harness import evaluate
    bad = tmp_path / "competition.toml"
    bad.write_text('reveal = "sometimes"\n')
    code = evaluate.main(["--config", str(bad), "--submissions", str(tmp_path / "none"),
                          "--db", str(tmp_path / "x.db")])
    out = capsys.readouterr().out
    assert code == 2
    assert "error:" in out and "'reveal' = 'sometimes' is not one of" in out
    assert not (tmp_path / "x.db").exists()  # nothing was created before the rules were read


@pytest.mark.parametrize("value, expected", [("2", 2_000_000_000), ("0.5", 500_000_000), ("3.25", 3_250_000_000)])
def test_max_entry_gb_is_in_gigabytes_of_a_billion_bytes(value, expected):
    import tomllib
    rules = parse(tomllib.loads(f"max_entry_gb = {value}\n"))
    assert rules.max_entry_bytes == expected and rules.as_dict()["max_entry_gb"] == float(value)


@pytest.mark.parametrize("value, expected", [
    ('"2 GiB"', 2 * 1024 ** 3), ('"800 MB"', 800_000_000), ('"1.5 gib"', 3 * 2 ** 29), ("1000000", 1_000_000),
    ('"512 MiB"', 512 * 2 ** 20), ('"64kB"', 64_000)])
def test_warm_memory_is_a_size_in_bytes(value, expected):
    import tomllib
    assert parse(tomllib.loads(f"[dashboard]\nwarm_memory = {value}\n")).warm_memory == expected
    assert parse({}).warm_memory == 2 * 1024 ** 3  # the default: room on an 8 GiB server


def test_metric_table_covers_what_the_ranking_reads():
    assert set(competition.PRIMARY_METRICS) <= set(competition.METRICS)
    assert all(kind in (None, "guest", "mnist") for kind, _, _ in competition.METRICS.values())
