"""Keeping storage bounded: ``[storage] keep_versions`` drops the files of old versions (never the ranked one, never
one the board shows, never a result), counts only the bytes no kept version shares, and says so everywhere."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import torch
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from harness import evaluate, runner, verify, versions as versions_cli
from harness.common import competition
from harness.entries.discovery import load_entry
from harness.scoring import retention
from harness.store import audit, evaluations, runs, snapshots, space, versions
from harness.store.engine import make_engine
from harness.store.schema import EntryVersion, Evaluation, FileBlob, FileChunk, VersionFiles
from harness.store.versions import history
from leaderboard import views
from tests.conftest import evaluate_args
from tests.entries import TEMPLATE_CODE, template_weights, with_forward, write_entry

START = datetime(2027, 1, 1, 12, 0)
DEADLINE = datetime(2027, 1, 3, 12, 0, tzinfo=UTC)  # after the third version, before the fourth


def new_version(engine, folder: Path, seed: int, day: int, numbers: int = 20_000) -> tuple[int, dict[str, bytes]]:
    """A version with weights of its own (random, so shared with no other) first seen on ``START + day``; its id
    and files."""
    torch.manual_seed(seed)
    torch.save({"w": torch.randn(numbers)}, folder / "weights.pt")
    entry = load_entry(folder)
    version_id = versions.ensure_version(engine, entry)
    assert snapshots.keep(engine, version_id, entry) is True
    with Session(engine) as session, session.begin():
        session.execute(update(EntryVersion).where(EntryVersion.id == version_id)
                        .values(first_seen_at=START + timedelta(days=day)))
    return version_id, {p.name: p.read_bytes() for p in folder.iterdir()}


def evaluated(engine, version_id: int, status: str = "ok") -> int:
    run_id = runs.start_run(engine, "cpu", [])
    record = evaluations.Record(status=status, error=None if status == "ok" else "it failed.", seconds=1.0,
                                device="cpu", params=10)
    return evaluations.save_evaluation(engine, run_id=run_id, version_id=version_id, eval_key=f"key-{version_id}",
                                       record=record)


def blob_shas(engine) -> set[str]:
    with Session(engine) as session:
        return set(session.scalars(select(FileBlob.sha256)))


@pytest.fixture()
def five_versions(tmp_path, db_url):
    """ada: five versions, the first three on time. v1 has the stored evaluation that ranks (v3, the one that counts,
    is not evaluated yet), v4 is the evaluated late one; bob: one version."""
    engine = make_engine(db_url)
    folder = write_entry(tmp_path / "subs", "ada", code=TEMPLATE_CODE, toml='author = "Ada"\n')
    made = [new_version(engine, folder, seed, day) for seed, day in zip(range(5), range(5), strict=True)]
    ids = [v for v, _ in made]
    evaluated(engine, ids[0])
    evaluated(engine, ids[3])
    bob = write_entry(tmp_path / "subs", "bob", code=TEMPLATE_CODE)
    bob_id, _ = new_version(engine, bob, 99, 0)
    yield engine, ids, [files for _, files in made], bob_id
    engine.dispose()


def test_keep_versions_is_read_from_competition_toml_and_bad_values_get_one_sentence():
    assert competition.parse({}).keep_versions is None
    assert competition.parse({"storage": {"keep_versions": "all"}}).keep_versions is None
    assert competition.parse({"storage": {"keep_versions": 2}}).keep_versions == 2
    assert competition.parse({"storage": {"keep_versions": 0}}).keep_versions == 0
    assert competition.parse({"storage": {"keep_versions": 2}}).as_dict()["keep_versions"] == 2
    for bad in ("some", -1, 2.5, True, "2"):
        with pytest.raises(competition.CompetitionConfigError) as caught:
            competition.parse({"storage": {"keep_versions": bad}}, "club.toml")
        assert str(caught.value) == (
            f"club.toml: storage.keep_versions = {bad!r} must be \"all\" (keep every version's files) or a whole "
            "number of versions, such as 2 (each entry's ranked version and its last 2 keep their files).")
    with pytest.raises(competition.CompetitionConfigError, match=r"unknown key storage.keep; the only key is "):
        competition.parse({"storage": {"keep": 2}})
    with pytest.raises(competition.CompetitionConfigError, match=r"'storage' must be a table"):
        competition.parse({"storage": 2})


def test_the_ranked_shown_and_last_versions_keep_their_files_the_others_lose_only_files(five_versions, tmp_path):
    engine, ids, files, bob_id = five_versions
    rules = competition.Competition(deadline=DEADLINE, keep_versions=1)
    # kept: v1 (its evaluation ranks), v3 (counts: re-scored from its files), v4 (the late one shown), v5 (the last)
    assert retention.to_prune(retention.standings.version_rows(engine), rules, {}) == [ids[1]]
    assert retention.to_prune(retention.standings.version_rows(engine),
                              competition.Competition(deadline=DEADLINE), {}) == []  # "all": nothing goes
    before = blob_shas(engine)
    v2_weights = files[1]["weights.pt"]
    gone = {hashlib.sha256(v2_weights).hexdigest()}  # model.py and entry.toml are shared with the kept ones

    assert retention.prune(engine, rules, dry_run=True) == snapshots.Freed(1, len(v2_weights))
    assert blob_shas(engine) == before  # a dry run deletes nothing
    assert retention.prune(engine, rules) == snapshots.Freed(1, len(v2_weights))
    assert blob_shas(engine) == before - gone
    assert retention.prune(engine, rules) == snapshots.Freed(0, 0)  # nothing left to free

    with pytest.raises(ValueError, match="removed to save space"):
        snapshots.restore(engine, ids[1], "ada", tmp_path / "r2")
    for i in (0, 2, 3, 4):  # the others restore byte for byte
        restored = snapshots.restore(engine, ids[i], "ada", tmp_path / f"r{i}")
        assert {p.name: p.read_bytes() for p in restored.folder.iterdir()} == files[i]
    with Session(engine) as session:  # a member never loses a result; the manifest says which files it held
        assert session.scalar(select(func.count()).select_from(Evaluation)) == 2
        assert session.get(VersionFiles, ids[1]).manifest["weights.pt"] == next(iter(gone))

    listed = history(engine, "ada")
    assert [(v.files_kept, v.files_pruned) for v in listed] == [(True, False), (False, True), (True, False),
                                                                 (True, False), (True, False)]
    assert versions_cli.describe(listed[1], rules).endswith("0 evaluation(s), files removed to save space")
    assert views.version_text(listed[1], rules).endswith(" · its files were removed to save space (its results stay)")
    assert history(engine, "bob")[0].files_kept  # bob's only version is its last

    v2 = tmp_path / "again" / "ada"  # the member brings v2's files back: they are kept again
    v2.mkdir(parents=True)
    for name, data in files[1].items():
        (v2 / name).write_bytes(data)
    entry = load_entry(v2)
    assert versions.ensure_version(engine, entry) == ids[1] and snapshots.keep(engine, ids[1], entry) is True
    assert blob_shas(engine) == before and history(engine, "ada")[1].files_kept
    restored = snapshots.restore(engine, ids[1], "ada", tmp_path / "r2-again")
    assert {p.name: p.read_bytes() for p in restored.folder.iterdir()} == files[1]


def test_a_file_a_kept_version_shares_is_neither_dropped_nor_counted(tmp_path, db_url):
    """v1 and v3 hold the same weights; dropping v1's files frees only its own model.py, which v3 does not share."""
    engine = make_engine(db_url)
    folder = write_entry(tmp_path / "subs", "ada", code=TEMPLATE_CODE)
    v1, f1 = new_version(engine, folder, 7, 0)
    (folder / "model.py").write_text(TEMPLATE_CODE + "\n# v2\n")
    v2, _ = new_version(engine, folder, 8, 1)
    (folder / "model.py").write_text(TEMPLATE_CODE + "\n# v3\n")
    v3, _ = new_version(engine, folder, 7, 2)
    assert snapshots.drop_files(engine, [v1]) == snapshots.Freed(1, len(f1["model.py"]))
    assert hashlib.sha256(f1["weights.pt"]).hexdigest() in blob_shas(engine)
    assert snapshots.drop_files(engine, [v1, v2]).versions == 1  # v1 has no files left to drop
    engine.dispose()


def test_chunks_of_a_large_file_go_with_it(tmp_path, db_url, monkeypatch):
    monkeypatch.setattr(snapshots, "CHUNK_BYTES", 30_000)
    engine = make_engine(db_url)
    folder = write_entry(tmp_path / "subs", "ada", code=TEMPLATE_CODE)
    v1, f1 = new_version(engine, folder, 1, 0)
    new_version(engine, folder, 2, 1)
    with Session(engine) as session:
        chunks = session.scalar(select(func.count()).select_from(FileChunk))
    assert chunks == 2 * -(-len(f1["weights.pt"]) // 30_000)
    assert snapshots.drop_files(engine, [v1]) == snapshots.Freed(1, len(f1["weights.pt"]))
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(FileChunk)) == chunks // 2
    engine.dispose()


def test_sizes_read_in_mb_and_gb_with_thousands_separators():
    assert space.size_text(94_123_456) == "94.1 MB"
    assert space.size_text(1_234_567_000) == "1.23 GB"
    assert space.size_text(190_000_000_000) == "190.00 GB"
    assert space.size_text(1_234_567_000_000) == "1,234.57 GB"
    assert space.size_text(999_000) == "1.0 MB"


def test_prune_command_says_what_it_frees_and_shrinks_the_database(five_versions, tmp_path, db_url, capsys):
    engine, ids, files, _ = five_versions
    config = tmp_path / "rules.toml"
    config.write_text('deadline = 2027-01-03T12:00:00Z\n[storage]\nkeep_versions = 1\n')
    freed = len(files[1]["weights.pt"])
    args = ["--prune", "--db", db_url, "--config", str(config)]
    stored = snapshots.stored_bytes(engine)
    assert versions_cli.main(args + ["--dry-run"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"Would remove the files of 1 version ({space.size_text(freed)} that no kept version shares); nothing " \
           "deleted (--dry-run)." in out and "keep_versions = 1, from " in out
    assert snapshots.stored_bytes(engine) == stored
    size_before = space.database_bytes(engine)
    assert versions_cli.main(args) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"Removed the files of 1 version ({space.size_text(freed)} that no kept version shares); their " \
           "evaluations and results stay." in out
    assert snapshots.stored_bytes(engine) == stored - freed
    assert "before pruning, " in out
    if engine.dialect.name == "sqlite":  # PostgreSQL's own size moves by itself (statistics, autovacuum)
        assert f"Database: {space.size_text(size_before)} before pruning, " in out
        assert "SQLite rewrote the file without the freed room (VACUUM)." in out
        assert space.database_bytes(engine) <= size_before - freed  # the file shrank by at least what was freed
    else:
        assert "PostgreSQL vacuumed the file tables" in out
    assert audit.audit_log(engine)[0]["action"] == "prune-files"
    assert versions_cli.main(args) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "Nothing to remove" in out and "Database: " in out
    if engine.dialect.name == "sqlite":
        assert "The SQLite file has no free room to give back." in out


def test_prune_command_bad_uses_get_one_sentence(tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'lb.db'}"
    # the default rule keeps everything: it says how to change it
    assert versions_cli.main(["--prune", "--db", db]) == 0
    assert "nothing to prune. To keep only each entry's ranked version and its last 2, add [storage] with " \
           "keep_versions = 2" in " ".join(capsys.readouterr().out.split())
    assert versions_cli.main(["ada", "--prune", "--db", db]) == 2
    assert "error: --prune applies to every entry; drop 'ada': python -m harness.versions --prune." in \
           " ".join(capsys.readouterr().err.split())
    assert versions_cli.main(["ada", "--dry-run", "--db", db]) == 2
    assert "error: --dry-run goes with --prune: python -m harness.versions --prune --dry-run." in \
           " ".join(capsys.readouterr().err.split())
    assert versions_cli.main(["--db", db]) == 2
    assert "error: name an entry" in capsys.readouterr().err


def plan_and_settle(engine, entry, rules, tmp_path) -> list[str]:
    """What a run does with the store around its scoring (``runner.plan``, then ``runner.settle``): its notes."""
    jobs, notes = runner.plan(engine, [entry], rules, tmp_path / "work")
    runner.settle(engine, jobs)
    return notes


def test_a_run_prunes_after_keeping_a_new_version_when_the_rule_is_set(tmp_path, db_url, capsys):
    """The watcher and harness.evaluate plan each run: once the new version is kept, the rule applies."""
    engine = make_engine(db_url)
    folder = write_entry(tmp_path / "subs", "ada", code=TEMPLATE_CODE)
    rules = competition.Competition(keep_versions=1)
    torch.save({"w": torch.randn(5000)}, folder / "weights.pt")
    first = load_entry(folder)
    assert plan_and_settle(engine, first, rules, tmp_path) == []
    old_weights = (folder / "weights.pt").stat().st_size
    torch.save({"w": torch.randn(5000)}, folder / "weights.pt")
    notes = plan_and_settle(engine, load_entry(folder), competition.Competition(), tmp_path)
    assert notes == [] and all(v.files_kept for v in history(engine, "ada"))  # "all": nothing goes
    torch.save({"w": torch.randn(5000)}, folder / "weights.pt")
    notes = plan_and_settle(engine, load_entry(folder), rules, tmp_path)
    assert notes == [f"removed the files of 2 old versions ({space.size_text(2 * old_weights)}) by [storage] "
                     "keep_versions = 1; their results stay (python -m harness.versions --prune shrinks the database "
                     "file)."]
    assert [v.files_kept for v in history(engine, "ada")] == [False, False, True]
    config = tmp_path / "rules.toml"  # the room the run freed goes back to the disk with --prune
    config.write_text("[storage]\nkeep_versions = 1\n")
    before = space.database_bytes(engine)
    assert versions_cli.main(["--prune", "--db", db_url, "--config", str(config)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "Nothing to remove" in out and "before pruning, " in out
    if engine.dialect.name == "sqlite":  # PostgreSQL's own size moves by itself (statistics, autovacuum)
        assert f"Database: {space.size_text(before)} before pruning, " in out
        assert "SQLite rewrote the file without the freed room (VACUUM)." in out
        assert space.database_bytes(engine) <= before - 2 * old_weights
    engine.dispose()


def test_verify_says_the_evaluated_versions_files_were_pruned_and_exits_0(tmp_path, means, mnist_dir, capsys):
    """alpha's v1 works; v2 fails. The board shows v2 (the latest), the newest working evaluation is v1's: once v1's
    files are pruned, verify says so instead of reporting a difference."""
    subs = tmp_path / "subs"
    folder = write_entry(subs, "alpha", weights=template_weights(means))
    db = f"sqlite:///{tmp_path / 'lb.db'}"
    config = tmp_path / "rules.toml"
    config.write_text('[storage]\nkeep_versions = 1\n')
    run = evaluate_args(subs, mnist_dir, tmp_path / "none", db, "--config", str(config))
    assert evaluate.main(run) == 0
    (folder / "model.py").write_text(with_forward("raise RuntimeError('no')"))
    evaluate.main(run)
    assert versions_cli.main(["--prune", "--db", db, "--config", str(config)]) == 0
    assert "Removed the files of 1 version" in capsys.readouterr().out
    assert verify.main(["--submissions", str(subs), "--db", db]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "– alpha: the files of the evaluated version " in out and "were removed to save space ([storage] " \
        "keep_versions in competition.toml), so it cannot be re-scored; its stored results stand, nothing " \
        "differs." in out


def test_a_file_pruned_while_a_new_version_sharing_it_is_kept_is_stored_again(tmp_path, db_url, monkeypatch):
    """A run keeps v2, which shares v1's weights, while another process drops v1's files between keep's look at what
    is stored and its insert: keep notices the shared file is gone and stores it again, so v2 restores whole."""
    engine, other = make_engine(db_url), make_engine(db_url)
    folder = write_entry(tmp_path / "subs", "ada", code=TEMPLATE_CODE)
    v1, _ = new_version(engine, folder, 3, 0)
    (folder / "model.py").write_text(TEMPLATE_CODE + "\n# v2: same weights\n")
    entry = load_entry(folder)
    v2 = versions.ensure_version(engine, entry)
    store_file, dropped = snapshots._store_file, []

    def racing(session, sha, path):
        if not dropped:  # the first new file: the other process prunes v1 now
            dropped.append(snapshots.drop_files(other, [v1]))
        store_file(session, sha, path)
    monkeypatch.setattr(snapshots, "_store_file", racing)
    assert snapshots.keep(engine, v2, entry) is True
    assert dropped[0].versions == 1
    restored = snapshots.restore(engine, v2, "ada", tmp_path / "r2")
    assert {p.name: p.read_bytes() for p in restored.folder.iterdir()} == {p.name: p.read_bytes()
                                                                          for p in folder.iterdir()}
    engine.dispose()
    other.dispose()
