"""Which version counts (deadline, overrides, one entry per member) and ranking by the configured metrics."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest

from harness.common.competition import Competition, parse
from harness.scoring import board, ranking
from harness.scoring.standings import (
    DISQUALIFIED,
    LATE,
    RANKED,
    SUPERSEDED,
    VersionRow,
    counted_versions,
    member,
    picks,
)
from harness.store.evaluations import Score

DEADLINE = {"deadline": "2027-01-10T23:00:00+00:00"}


def v(entry, version_id, when, evaluation_id, author=None, overridden=False, failed=False):
    return VersionRow(entry, version_id, f"hash{version_id}", author, when, overridden, evaluation_id, failed=failed)


def test_latest_on_time_version_is_ranked_and_a_later_one_is_late():
    versions = [v("ada", 1, datetime(2027, 1, 2), 11), v("ada", 2, datetime(2027, 1, 9), 12),
                v("ada", 3, datetime(2027, 1, 11), 13), v("bob", 4, datetime(2027, 1, 12), 14)]
    chosen = {(p.entry_name, p.standing): p for p in picks(versions, parse(DEADLINE))}
    assert set(chosen) == {("ada", RANKED), ("ada", LATE), ("bob", LATE)}
    assert chosen["ada", RANKED].evaluation_id == 12 and chosen["ada", LATE].evaluation_id == 13
    assert "the on-time version is ranked" in chosen["ada", LATE].note
    assert "on-time" not in chosen["bob", LATE].note  # bob never submitted in time


def test_exactly_at_the_deadline_is_on_time():
    versions = [v("ada", 1, datetime(2027, 1, 10, 23, 0, 0), 5)]
    assert [p.standing for p in picks(versions, parse(DEADLINE))] == [RANKED]


def test_an_unevaluated_on_time_version_is_what_the_runner_must_score():
    versions = [v("ada", 1, datetime(2027, 1, 2), 11), v("ada", 2, datetime(2027, 1, 9), None),
                v("ada", 3, datetime(2027, 1, 11), 13)]
    assert counted_versions(versions, parse(DEADLINE))["ada"].version_id == 2
    # until it is scored, the board shows the newest evaluated on-time version
    assert [(p.evaluation_id, p.standing) for p in picks(versions, parse(DEADLINE))] == [(11, RANKED), (13, LATE)]


def test_without_a_deadline_the_newest_version_counts():
    versions = [v("ada", 1, datetime(2027, 1, 2), 11), v("ada", 2, datetime(2030, 1, 9), 12)]
    assert [(p.evaluation_id, p.standing) for p in picks(versions, parse({}))] == [(12, RANKED)]


def test_one_entry_per_member_keeps_the_most_recent_submission():
    versions = [v("ada-cnn", 1, datetime(2027, 1, 2), 11, author="Ada Lovelace"),
                v("ada-mlp", 2, datetime(2027, 1, 5), 12, author="  ada   LOVELACE "),
                v("bob", 3, datetime(2027, 1, 3), 13, author="Bob"),
                v("anon-1", 4, datetime(2027, 1, 3), 14), v("anon-2", 5, datetime(2027, 1, 4), 15)]
    rules = parse({**DEADLINE, "entries_per_member": "one"})
    standing = {p.entry_name: p for p in picks(versions, rules)}
    assert standing["ada-mlp"].standing == RANKED and standing["bob"].standing == RANKED
    assert standing["ada-cnn"].standing == SUPERSEDED and "ada-mlp is the one ranked" in standing["ada-cnn"].note
    assert standing["anon-1"].standing == standing["anon-2"].standing == RANKED  # no author: each its own member
    several = {p.entry_name: p.standing for p in picks(versions, parse(DEADLINE))}
    assert set(several.values()) == {RANKED}


def test_hidden_entries_are_left_out_and_disqualified_ones_shown_once_unranked():
    versions = [v("ada", 1, datetime(2027, 1, 2), 11), v("ada", 2, datetime(2027, 1, 11), 12),
                v("bob", 3, datetime(2027, 1, 3), 13), v("cy", 4, datetime(2027, 1, 12), 14),
                v("eve", 5, datetime(2027, 1, 4), 15)]
    moderation = {"ada": ("disqualified", "trained on the test set"), "cy": ("disqualified", "copied weights"),
                  "eve": ("hidden", "asked to withdraw")}
    chosen = [(p.entry_name, p.evaluation_id, p.standing, p.note) for p in picks(versions, parse(DEADLINE), moderation)]
    # by hand: ada's on-time version 1 (not also its late one), bob as before, cy's only (late) version, no eve
    assert chosen == [("ada", 11, DISQUALIFIED, "trained on the test set"), ("bob", 13, RANKED, ""),
                      ("cy", 14, DISQUALIFIED, "copied weights")]


def test_a_disqualified_entry_supersedes_none_of_its_authors_entries():
    versions = [v("ada-cnn", 1, datetime(2027, 1, 2), 11, author="Ada"),
                v("ada-mlp", 2, datetime(2027, 1, 5), 12, author="Ada")]
    rules = parse({**DEADLINE, "entries_per_member": "one"})

    def standing(moderation):
        return {p.entry_name: p.standing for p in picks(versions, rules, moderation)}

    assert standing({}) == {"ada-cnn": SUPERSEDED, "ada-mlp": RANKED}
    assert standing({"ada-mlp": ("disqualified", "x")}) == {"ada-cnn": RANKED, "ada-mlp": DISQUALIFIED}
    assert standing({"ada-cnn": ("disqualified", "x")}) == {"ada-cnn": DISQUALIFIED, "ada-mlp": RANKED}
    assert standing({"ada-mlp": ("hidden", "x")}) == {"ada-cnn": RANKED}


def test_member_key_ignores_case_and_spacing():
    assert member(" Ada  Lovelace", "x") == member("ada lovelace", "y") == "ada lovelace"
    assert member(None, "x") != member(None, "y")


def row(name, guest_acc, mnist_acc, guest_loss=None, params=1000, standing="ranked", n=100):
    def score(acc, total, loss=None):
        return Score(0, 0, int(round(acc * total)), total, acc, 0.0, 1.0, loss)

    guest = score(guest_acc, n, guest_loss)
    mask = np.zeros(n, bool)
    mask[:guest.correct] = True
    return ranking.Row(name=name, display_name=name, author=None, status="ok", error=None,
                       mnist=score(mnist_acc, 1000), guest=guest, params=params, images_per_second=1.0,
                       weights_bytes=1, content_hash="h" * 12, evaluated_at="", evaluation_id=hash(name) % 1000,
                       standing=standing, correct_mask=mask)


def test_tie_break_metrics_in_order():
    rows = [row("a", 0.90, 0.99, guest_loss=0.40), row("b", 0.90, 0.99, guest_loss=0.30),
            row("c", 0.90, 0.98, guest_loss=0.10), row("d", 0.95, 0.90, guest_loss=0.90)]
    out = ranking.rank(rows, primary="guest_accuracy", tie_break=("mnist_accuracy", "guest_log_loss"))
    # by hand: d leads on guest; a, b, c tie on guest; mnist puts a, b over c; log loss puts b over a
    assert [(r.name, r.rank) for r in out] == [("d", 1), ("b", 2), ("a", 3), ("c", 4)]
    fewer_params = ranking.rank([row("x", 0.9, 0.99, params=500), row("y", 0.9, 0.99, params=100)],
                                tie_break=("mnist_accuracy", "params"))
    assert [r.name for r in fewer_params] == ["y", "x"]
    exact = ranking.rank([row("x", 0.9, 0.99), row("y", 0.9, 0.99)], tie_break=("mnist_accuracy",))
    assert [r.rank for r in exact] == [1, 1]  # nothing separates them: they share the rank


def test_mnist_primary_and_unranked_rows():
    rows = [row("cheat", 1.0, 1.0, standing="disqualified"), row("a", 0.99, 0.95), row("b", 0.50, 0.97),
            row("late", 1.0, 1.0, standing="late"), row("old", 1.0, 1.0, standing="superseded")]
    out = ranking.rank(rows, primary="mnist_accuracy", tie_break=("guest_accuracy",))
    assert [(r.name, r.rank) for r in out] == [("b", 1), ("a", 2), ("late", None), ("old", None), ("cheat", None)]
    assert out[-1].with_leader is None and out[-1].p_vs_leader is None and out[-1].level_with == ()


def test_five_entries_medals_follow_the_rank_and_separation_is_against_the_leader():
    # Nested masks: k more wrong digits than the leader is k discordant digits, raw p = 2 * 0.5**k.
    rows = [row(n, acc, 0.99) for n, acc in zip("edcba", (0.70, 0.80, 0.90, 0.97, 1.00), strict=True)]
    out = ranking.rank(rows)
    assert [(r.name, r.rank) for r in out] == [("a", 1), ("b", 2), ("c", 3), ("d", 4), ("e", 5)]
    assert [r.with_leader for r in out] == [True, True, False, False, False]
    assert out[0].p_vs_leader is None and out[1].p_vs_leader == pytest.approx(0.25)
    assert out[2].p_vs_leader == pytest.approx(2 * 2 * 0.5 ** 10)  # Holm: second-largest of 4 raw p times 2
    # #3 against #2: 7 discordant, raw 2 * 0.5**7 = 0.0156, times 2 (Holm) = 0.031 < 0.05: separated.
    assert [r.level_with for r in out] == [(1, 2), (1, 2), (3,), (), ()]
    assert ranking.leader_sentence(out, "the guest's 100 digits") == (
        "The guest's 100 digits cannot separate the top 2 (exact McNemar tests against the leader, "
        "Holm-corrected, α = 0.05).")
    from rich.console import Console

    from harness.scoring import report
    console = Console(record=True, width=160)
    report.print_table(console, out, True, [])
    terminal = console.export_text()
    assert "│ 2 ≈ │ b" in terminal and "│   3 │ c" in terminal
    assert "The 100 digits ranked on cannot separate the top 2" in terminal
    clear = ranking.rank([row("a", 1.0, 0.99), row("b", 0.8, 0.99)])
    assert ranking.leader_sentence(clear, "the 100 digits").startswith("The 100 digits put a clearly ahead")
    assert ranking.leader_sentence(ranking.rank([row("a", 1.0, 0.99)] * 1)[:1], "x").startswith("X put a clearly")


def test_guest_metrics_are_skipped_when_an_entry_has_no_guest_result():
    rules = Competition(primary="guest_accuracy", tie_break=("guest_log_loss", "params"))
    assert board.metrics(rules, "guest") == ["guest_accuracy", "guest_log_loss", "params"]
    assert board.metrics(rules, "mnist") == ["mnist_accuracy", "params"]  # MNIST accuracy decides, then params
    a, b = row("a", 0.1, 0.97), row("b", 0.9, 0.95)
    a.guest = None
    order = board.metrics(rules, "mnist")
    out = ranking.rank([a, b], primary=order[0], tie_break=order[1:])
    assert [r.name for r in out] == ["a", "b"]


def test_verdict_names_entries_level_with_the_leader_when_they_are_not_the_top_k():
    rows = [row(n, acc, 0.99) for n, acc in (("a", 1.0), ("b", 0.9), ("c", 0.89))]
    for r, level in zip(rows, (True, False, True), strict=True):
        r.with_leader = level
    assert ranking.leader_sentence(rows, "the guest's 100 digits") == (
        "The guest's 100 digits cannot separate 1 entry from the leader, a: c (exact McNemar tests against the "
        "leader, Holm-corrected, α = 0.05).")
    assert ranking.leader_sentence([row("a", 1.0, 0.99)], "x") == ""  # not ranked: nothing to say
    many = [row("lead", 1.0, 0.99), row("gap", 0.95, 0.99)] + [row(f"e{i}", 0.9, 0.99) for i in range(63)]
    for r in many:
        r.with_leader = r.name != "gap"
    assert ranking.leader_sentence(many, "the guest's 1,592 digits") == (  # three names and a count, not 63 names
        "The guest's 1,592 digits cannot separate 63 entries from the leader, lead: e0, e1, e2 and 60 more, marked "
        "≈ #1 on the board (exact McNemar tests against the leader, Holm-corrected, α = 0.05).")


def test_a_newer_entry_or_version_that_failed_never_supersedes_a_working_one():
    """Ada's working ada-cnn, then ada-mlp whose evaluation failed: ada-cnn stays ranked. Bob's entry's newer version
    failed: his older working version is ranked, the failed one shown as superseded. Cleo has only failed entries:
    her newest is ranked (shown failed), as before. Without "one", nothing changes."""
    versions = [v("ada-cnn", 1, datetime(2027, 1, 2), 11, author="Ada"),
                v("ada-mlp", 2, datetime(2027, 1, 5), 12, author="Ada", failed=True),
                v("bob", 3, datetime(2027, 1, 3), 13, author="Bob"),
                v("bob", 4, datetime(2027, 1, 6), 14, author="Bob", failed=True),
                v("cleo-1", 5, datetime(2027, 1, 3), 15, author="Cleo", failed=True),
                v("cleo-2", 6, datetime(2027, 1, 4), 16, author="Cleo", failed=True)]
    rules = parse({**DEADLINE, "entries_per_member": "one"})
    shown = [(p.entry_name, p.version_id, p.standing, p.note) for p in picks(versions, rules)]
    assert sorted(shown) == sorted([
        ("ada-cnn", 1, RANKED, ""),
        ("ada-mlp", 2, SUPERSEDED, "Ada's entry ada-cnn is the one ranked, since this newer one failed (one entry per "
                                   "member)"),
        ("bob", 3, RANKED, ""),
        ("bob", 4, SUPERSEDED, "this newer version failed; the entry's latest working version is the one ranked (one "
                               "entry per member)"),
        ("cleo-1", 5, SUPERSEDED, "Cleo's newer entry cleo-2 is the one ranked (one entry per member)"),
        ("cleo-2", 6, RANKED, "")])
    several = [(p.entry_name, p.version_id, p.standing) for p in picks(versions, parse(DEADLINE))]
    assert sorted(several) == [("ada-cnn", 1, RANKED), ("ada-mlp", 2, RANKED), ("bob", 4, RANKED),
                               ("cleo-1", 5, RANKED), ("cleo-2", 6, RANKED)]


@pytest.mark.slow
def test_a_kit_entry_no_longer_supersedes_the_baselines(tmp_path, monkeypatch):
    """Under one entry per member, the committed baselines (their authors read from their entry.toml) keep the
    standings they have without a member's kit entry, whose author harness.train now takes from the login name."""
    import tomllib

    from harness.train import entry_author
    from tests.conftest import REPO
    monkeypatch.setenv("LOGNAME", "ada")
    authors = {f.parent.name: tomllib.loads(f.read_text()).get("author")
               for f in sorted((REPO / "submissions").glob("*/entry.toml"))}
    kit_written = sorted(name for name, author in authors.items() if author == "MNIST club training kit")
    assert len(kit_written) == 5  # baseline-lenet5, -logreg, -robust, -strong and exported-cnn
    baselines = [v(name, i, datetime(2027, 1, 1, i), 10 + i, author=authors[name])
                 for i, name in enumerate(kit_written, 1)]
    kit = v("ada-cnn", 99, datetime(2027, 1, 5), 199, author=entry_author(None, tmp_path / "ada-cnn"))
    rules = parse({**DEADLINE, "entries_per_member": "one"})
    alone = {p.entry_name: p.standing for p in picks(baselines, rules)}
    together = {p.entry_name: p.standing for p in picks(baselines + [kit], rules)}
    assert together == {**alone, "ada-cnn": RANKED} and RANKED in alone.values()


def test_an_owner_from_the_submit_page_beats_the_author_an_entry_toml_claims():
    """Bob's upload says author = "Ada" in its entry.toml; his code made him its owner, so it supersedes none of Ada's
    entries (the cheat: with one entry per member, naming someone else unranks their entry)."""
    versions = [v("ada-net", 1, datetime(2027, 1, 2), 11, author="Ada"),
                VersionRow("bob-net", 2, "hash2", "Ada", datetime(2027, 1, 5), False, 12, owner="Bob")]
    rules = parse({**DEADLINE, "entries_per_member": "one"})
    assert {p.entry_name: p.standing for p in picks(versions, rules)} == {"ada-net": RANKED, "bob-net": RANKED}
    honest = [versions[0], VersionRow("ada-2", 3, "hash3", "someone", datetime(2027, 1, 6), False, 13, owner="ada")]
    assert {p.entry_name: p.standing for p in picks(honest, rules)} == {"ada-net": SUPERSEDED, "ada-2": RANKED}


def test_version_rows_read_the_owner_of_an_entry_by_its_name_in_any_case(tmp_path):
    from sqlalchemy.orm import Session

    from harness.scoring.standings import version_rows
    from harness.store import members
    from harness.store.engine import make_engine
    from harness.store.schema import Entry, EntryVersion
    engine = make_engine(str(tmp_path / "lb.db"))
    with Session(engine) as session, session.begin():
        for name in ("Bob-Net", "ada-net"):
            entry = Entry(name=name)
            session.add(entry)
            session.flush()
            session.add(EntryVersion(entry_id=entry.id, content_hash=f"h-{name}", code_hash="c", weights_hash="w",
                                     weights_bytes=1, display_name=name, author="Ada",
                                     first_seen_at=datetime(2027, 1, 2)))
    assert members.claim_entry(engine, "Bob-Net", "Bob")
    assert {r.entry_name: r.owner for r in version_rows(engine)} == {"Bob-Net": "Bob", "ada-net": None}
    engine.dispose()
