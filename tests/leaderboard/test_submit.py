"""The Submit page under AppTest, with the committed, trained baseline-lenet5 as the upload: a wrong code, another
member's entry, too big, too many and a bad file name are each refused with one sentence and store nothing; a
passing upload becomes the entry's new version, byte for byte, with the previous version kept in the store; a failing
check stores nothing and shows the check's own sentence. The organiser's code section issues a code shown once."""

from __future__ import annotations

from datetime import UTC

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from streamlit.testing.v1 import AppTest

from harness.store import audit, members, snapshots
from harness.store.engine import make_engine
from harness.store.schema import Entry, MemberCode, Upload
from harness.store.versions import history
from harness.submit import checking
from leaderboard import config, stats, submitting
from tests.conftest import REPO
from tests.leaderboard.test_dashboard import seen

APP = str(REPO / "leaderboard" / "app.py")
BASELINE = REPO / "submissions" / "baseline-lenet5"
FILES = ("model.py", "weights.pt", "entry.toml")


@pytest.fixture()
def site(tmp_path, monkeypatch, mnist_dir):
    """An empty database and submissions folder for the dashboard, and a code for Ada and one for Bob."""
    subs = tmp_path / "submissions"
    subs.mkdir()
    db = tmp_path / "lb.db"
    for var, value in (("LEADERBOARD_DB", str(db)), ("LEADERBOARD_SUBMISSIONS", str(subs)),
                       ("MNIST_DIR", str(mnist_dir))):
        monkeypatch.setenv(var, value)
    for var in (submitting.UPLOAD_MB_ENV, submitting.UPLOADS_PER_HOUR_ENV, config.PASSWORD_ENV):
        monkeypatch.delenv(var, raising=False)
    engine = make_engine(str(db))
    site = type("Site", (), {})()
    site.engine, site.subs, site.db = engine, subs, db
    site.ada, site.bob = members.issue_code(engine, "Ada"), members.issue_code(engine, "Bob")
    yield site
    engine.dispose()


def baseline_files(**replace: bytes) -> list[tuple[str, bytes]]:
    files = {name: (BASELINE / name).read_bytes() for name in FILES}
    files.update(replace)
    return list(files.items())


def submit(code: str, entry: str, files: list[tuple[str, bytes]]) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page("screens/submit.py")
    at.run()
    at.text_input[0].input(code)
    at.text_input[1].input(entry)
    at.file_uploader[0].set_value([(name, data, "application/octet-stream") for name, data in files])
    next(b for b in at.button if b.label == "Check and submit").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def only_error(at: AppTest) -> str:
    assert len(at.error) == 1 and not at.success, ([e.value for e in at.error], [s.value for s in at.success])
    return seen(at.error[0].value)  # what the member reads: the page escapes every sentence


def uploads(site) -> list[tuple[str, str]]:
    with Session(site.engine) as session:
        return [(u.member, u.outcome) for u in session.scalars(select(Upload).order_by(Upload.id))]


def stored_entries(site) -> list[str]:
    with Session(site.engine) as session:
        return list(session.scalars(select(Entry.name)))


def nothing_stored(site) -> bool:
    return not stored_entries(site) and [p.name for p in site.subs.iterdir() if not p.name.startswith(".")] == []


def test_a_wrong_code_is_refused_with_one_sentence(site):
    ident = site.ada.partition("-")[0]
    at = submit(f"{ident}-not-the-secret", "ada-lenet", baseline_files())
    assert only_error(at) == ("That code is not valid (mistyped, or revoked); check it, or ask the organiser for a "
                              "new one.")
    assert nothing_stored(site) and uploads(site) == []  # nobody to count it against
    members.revoke_code(site.engine, int(ident))
    assert only_error(submit(site.ada, "ada-lenet", baseline_files())).startswith("That code is not valid")


def test_another_members_entry_is_refused(site):
    assert members.claim_entry(site.engine, "ada-lenet", "Ada")
    at = submit(site.bob, "Ada-Lenet", baseline_files())
    assert only_error(at) == "The entry 'ada-lenet' belongs to another member; choose another name for yours."
    assert nothing_stored(site) and uploads(site) == [("Bob", "refused")]
    (site.subs / "from-git").mkdir()  # an entry committed with git belongs to nobody until the organiser decides
    assert only_error(submit(site.bob, "from-git", baseline_files())) == (
        "The entry 'from-git' was submitted without the dashboard; choose another name, or ask the organiser to "
        "give it to you on the Organiser page.")


def test_too_big_and_too_many_are_refused(site, monkeypatch):
    monkeypatch.setenv(submitting.UPLOAD_MB_ENV, "0.2")  # the baseline's files take 255,328 bytes
    assert only_error(submit(site.ada, "ada-lenet", baseline_files())) == (
        "Your files take 255,328 bytes, more than the 200,000 bytes an upload may take; make the weights smaller "
        "(e.g. save them in float16) or ask the organiser.")
    monkeypatch.delenv(submitting.UPLOAD_MB_ENV)
    monkeypatch.setenv(submitting.UPLOADS_PER_HOUR_ENV, "2")
    members.log_upload(site.engine, "Ada", "ada-lenet", 1, "failed", "an earlier try")
    members.log_upload(site.engine, "Ada", "ada-lenet", 1, "accepted")
    with Session(site.engine) as session:
        first = session.scalars(select(Upload.at).where(Upload.outcome == "failed")).one()
    message = only_error(submit(site.ada, "ada-lenet", baseline_files()))
    again = first.replace(hour=(first.hour + 1) % 24)
    assert message == (f"You have submitted 2 times in the last hour, the most allowed; try again after "
                       f"{again:%H:%M} UTC.")
    assert nothing_stored(site)
    assert uploads(site) == [("Ada", "refused"), ("Ada", "failed"), ("Ada", "accepted"), ("Ada", "refused")]


@pytest.mark.parametrize("name", ["../model.py", "train.py", "notes.doc", ".hidden.pt", "../curve.png",
                                   "sub/weights.pt", "model\x00.py"])
def test_a_bad_file_name_is_refused(site, name):
    files = baseline_files() + [(name, b"print('hi')\n")]
    message = only_error(submit(site.ada, "ada-lenet", files))
    assert message.startswith(f"The file name {name!r} is not one an entry uses: upload model.py and its weights "
                              "(weights.pt or weights.safetensors), or model.pt2, optionally with entry.toml, each "
                              "under exactly that name (no folders).")
    assert nothing_stored(site)


@pytest.mark.slow
def test_a_folder_the_training_kit_wrote_is_accepted_without_its_curve_and_notes(site, tmp_path):
    """baseline-lenet5 was written by harness.train: its folder holds curve.csv and curve.png beside the entry; with
    a README.md and a training log added, the whole folder is accepted, the extras named in one note and not stored."""
    kit = {p.name: p.read_bytes() for p in BASELINE.iterdir()}
    assert {"curve.csv", "curve.png"} <= set(kit) and set(FILES) < set(kit)
    upload = dict(kit, **{"README.md": b"# my LeNet\n", "train.log": b"epoch 1\n"})
    at = submit(site.ada, "ada-lenet", list(upload.items()))
    assert [seen(s.value) for s in at.success] == [
        "Accepted: ada-lenet version 1 is stored and will be scored in a few minutes; it appears on the "
        "Leaderboard as pending until then, then with its score."] and not at.error
    assert [seen(i.value) for i in at.info] == [
        "Left out, as not part of an entry (not stored): README.md, curve.csv, curve.png, train.log; only the model, "
        "its weights and entry.toml are kept."]
    folder = site.subs / "ada-lenet"
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == {name: kit[name] for name in FILES}
    (version,) = history(site.engine, "ada-lenet")
    restored = snapshots.restore(site.engine, version.version_id, "ada-lenet", tmp_path / "restored")
    assert {p.name: p.read_bytes() for p in restored.folder.iterdir()} == {name: kit[name] for name in FILES}


@pytest.mark.slow
def test_re_uploading_the_same_files_costs_nothing(site, monkeypatch):
    """With one checked upload an hour: the kit's folder is accepted; uploading the same files again (with or without
    the curve) says nothing changed and is neither checked nor counted, so the hour's one upload is still the first;
    different files are then refused by the limit."""
    monkeypatch.setenv(submitting.UPLOADS_PER_HOUR_ENV, "1")
    kit = [(p.name, p.read_bytes()) for p in sorted(BASELINE.iterdir())]
    assert seen(submit(site.ada, "ada-lenet", kit).success[0].value).startswith("Accepted: ada-lenet version 1")
    for files in (kit, baseline_files()):
        at = submit(site.ada, "ada-lenet", files)
        assert seen(at.success[0].value) == (
            "Nothing changed: these files are exactly ada-lenet's version 1, already stored and in its folder; "
            "nothing was checked, and this upload does not count towards your hourly limit.") and not at.error
        assert not at.metric  # no check ran
        assert [seen(i.value) for i in at.info] == ([
            "Left out, as not part of an entry (not stored): curve.csv, curve.png; only the model, its weights and "
            "entry.toml are kept."] if files is kit else [])
    toml = (BASELINE / "entry.toml").read_bytes().replace(b'"Baseline: LeNet-5"', b'"Ada\'s LeNet"')
    assert only_error(submit(site.ada, "ada-lenet", baseline_files(**{"entry.toml": toml}))).startswith(
        "You have submitted 1 times in the last hour, the most allowed; try again after ")
    assert uploads(site) == [("Ada", "accepted"), ("Ada", "unchanged"), ("Ada", "unchanged"), ("Ada", "refused")]
    assert len(history(site.engine, "ada-lenet")) == 1


def test_missing_weights_and_a_bad_entry_name_are_refused(site):
    assert only_error(submit(site.ada, "ada-lenet", [("model.py", b"")])) == (
        "An entry needs its model and weights: upload model.py and its weights (weights.pt or weights.safetensors), "
        "or model.pt2, optionally with entry.toml; you chose model.py.")
    assert only_error(submit(site.ada, "../etc", baseline_files())).startswith(
        "The entry name '../etc' is not allowed; rename it using letters, digits")
    assert nothing_stored(site)


@pytest.mark.slow
def test_a_passing_upload_becomes_a_new_version_byte_for_byte(site, tmp_path):
    first = baseline_files()
    at = submit(site.ada, "ada-lenet", first)
    assert [seen(s.value) for s in at.success] == [
        "Accepted: ada-lenet version 1 is stored and will be scored in a few minutes; it appears on the "
        "Leaderboard as pending until then, then with its score."] and not at.error
    accuracy = next(m for m in at.metric if m.label.startswith("Accuracy"))
    assert accuracy.value == "99.6%"  # the baseline reads 498 of the first 500 MNIST test digits (test_check_diagnosis)
    folder = site.subs / "ada-lenet"
    assert sorted(p.name for p in folder.iterdir()) == sorted(FILES)
    assert all((folder / name).read_bytes() == data for name, data in first)

    # Version 2: another display name; version 1 stays in the store, byte for byte.
    toml = (BASELINE / "entry.toml").read_bytes().replace(b'"Baseline: LeNet-5"', b'"Ada\'s LeNet"')
    second = baseline_files(**{"entry.toml": toml})
    at = submit(site.ada, "ada-lenet", second)
    assert seen(at.success[0].value).startswith("Accepted: ada-lenet version 2 is stored")
    assert all((folder / name).read_bytes() == data for name, data in second)
    assert [p.name for p in site.subs.iterdir() if p.name.startswith(".upload-")] == []  # no folder left behind
    versions = history(site.engine, "ada-lenet")
    assert len(versions) == 2 and all(v.files_kept for v in versions)
    for version, files in zip(versions, (first, second), strict=True):
        restored = snapshots.restore(site.engine, version.version_id, "ada-lenet", tmp_path / str(version.number))
        assert {p.name: p.read_bytes() for p in restored.folder.iterdir()} == dict(files)
    assert members.owner(site.engine, "ada-lenet") == "Ada" and uploads(site) == [("Ada", "accepted")] * 2


def test_a_failing_check_stores_nothing_and_says_why(site):
    toml = (BASELINE / "entry.toml").read_bytes().replace(b"channels = [\n    6,", b"channels = [\n    8,", 1)
    at = submit(site.ada, "ada-lenet", baseline_files(**{"entry.toml": toml}))
    message = only_error(at)
    assert message.startswith("The check failed, so nothing was stored: ada-lenet: the weights do not fit the model "
                              "(features.0.weight is [6, 1, 5, 5] in the weights but [8, 1, 5, 5] in the model;")
    assert message.endswith("set the constructor arguments in entry.toml to the ones you trained with, or save the "
                            "state_dict of this exact model.")
    assert nothing_stored(site) and members.owner(site.engine, "ada-lenet") is None
    assert uploads(site) == [("Ada", "failed")]


def unlocked_organiser_page(monkeypatch) -> AppTest:
    """The Organiser page under AppTest, unlocked with its password."""
    monkeypatch.setenv(config.PASSWORD_ENV, "club-secret")
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("screens/organiser.py")
    at.run()
    at.text_input[0].input("club-secret")
    next(b for b in at.button if b.label == "Unlock").click()
    at.run()
    return at


def test_the_organiser_issues_a_code_shown_once_that_works(site, monkeypatch):
    at = unlocked_organiser_page(monkeypatch)
    next(t for t in at.text_input if t.label == "Member's name").input("Cleo")
    next(b for b in at.button if b.label == "Issue a code").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(s.value == "Code for Cleo (shown once; give it to them now):" for s in at.success)
    code = at.code[0].value
    assert members.verify_code(site.engine, code) == "Cleo"
    with Session(site.engine) as session:
        assert code.partition("-")[2] not in {h for h in session.scalars(select(MemberCode.code_hash))}
    next(b for b in at.button if b.label == "Done: hide the code").click()
    at.run()
    assert not at.code  # shown once


@pytest.mark.slow
def test_after_the_deadline_an_upload_is_a_late_version_and_the_same_files_are_no_new_one(site):
    from datetime import datetime

    from harness.common.competition import Competition
    from harness.scoring.standings import counted_versions, version_rows
    from harness.submit.upload import submit as upload
    past = Competition(deadline=datetime(2026, 1, 10, 23, 59, tzinfo=UTC))
    first = upload(site.engine, site.subs, "ada-lenet", site.ada, baseline_files(), Competition())
    assert first.accepted and first.version == 1 and not first.late
    toml = (BASELINE / "entry.toml").read_bytes().replace(b'"Baseline: LeNet-5"', b'"Late LeNet"')
    late = upload(site.engine, site.subs, "ada-lenet", site.ada, baseline_files(**{"entry.toml": toml}), past)
    assert late.accepted and late.version == 2 and late.late
    assert late.sentences[1] == ("It came after the deadline (2026-01-10T23:59:00+00:00), so it is shown as late and "
                                 "not ranked; your on-time version still counts.")
    # the standings agree: under a deadline between the two uploads, version 1 is the one that counts
    between = Competition(deadline=datetime.fromisoformat(history(site.engine, "ada-lenet")[0].first_seen_at
                                                           .isoformat()).replace(tzinfo=UTC))
    counted = counted_versions(version_rows(site.engine), between)
    assert counted["ada-lenet"].version_id == history(site.engine, "ada-lenet")[0].version_id
    again = upload(site.engine, site.subs, "ada-lenet", site.ada, baseline_files(), Competition())
    assert again.accepted and again.version == 1 and again.sentences == [
        "Accepted: these files are ada-lenet's version 1, already stored; the folder holds them again."]
    assert len(history(site.engine, "ada-lenet")) == 2
    assert (site.subs / "ada-lenet" / "entry.toml").read_bytes() == (BASELINE / "entry.toml").read_bytes()


def zipped(entries: list[tuple[str, bytes]], links: tuple[str, ...] = ()) -> bytes:
    import io
    import stat
    import zipfile
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            archive.writestr(name, data)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, "/etc/passwd")
    return buffer.getvalue()


@pytest.mark.slow
def test_a_zip_of_the_entry_is_unpacked_and_its_contents_validated(site):
    from harness.common.competition import Competition
    from harness.submit.upload import UploadLimits, submit as upload
    rules = Competition()
    files = baseline_files()
    # Finder's zip of the folder: one top folder, plus __MACOSX and .DS_Store, which are left out
    archive = zipped([(f"ada-lenet/{n}", d) for n, d in files] + [("__MACOSX/ada-lenet/._model.py", b"x"),
                                                                  ("ada-lenet/.DS_Store", b"x")])
    outcome = upload(site.engine, site.subs, "ada-lenet", site.ada, [("ada-lenet.zip", archive)], rules)
    assert outcome.accepted, outcome.sentences
    assert {p.name: p.read_bytes() for p in (site.subs / "ada-lenet").iterdir()} == dict(files)

    def refused(archive: bytes, limits: UploadLimits | None = None) -> str:
        outcome = upload(site.engine, site.subs, "ada-lenet", site.ada, [("entry.zip", archive)], rules,
                         limits or UploadLimits())
        assert not outcome.accepted and len(outcome.sentences) == 1
        return outcome.sentences[0]

    assert refused(zipped(files, links=("weights2.pt",))) == (
        "'entry.zip' holds a symbolic link (weights2.pt); an entry holds real files only, so zip the files themselves.")
    assert refused(zipped(files + [("../../evil.py", b"import os")])) == (
        "'entry.zip' holds a path outside itself (../../evil.py); zip the entry's files only.")
    assert refused(zipped(files + [("/etc/cron.d/x", b"")])).startswith("'entry.zip' holds a path outside itself")
    # 50 MB of zeros compress to ~50 KB: refused by the sizes the archive declares, before anything is unpacked
    bomb = zipped(files + [("padding.bin", bytes(50 * 10 ** 6))])
    assert len(bomb) < 10 ** 6
    assert refused(bomb, UploadLimits(max_bytes=10 ** 6)) == (
        "The files in 'entry.zip' take 50.3 MB, more than the 1.0 MB an upload may take; make the weights smaller "
        "(e.g. save them in float16) or ask the organiser.")
    assert refused(zipped([("sub/dir/model.py", b""), ("weights.pt", b"")])).startswith(
        "The file name 'sub/dir/model.py' is not one an entry uses")
    assert refused(b"PK\x03\x04 not really") == (
        "'entry.zip' is not a zip archive that can be read; make it again, or upload the files themselves.")
    assert len(history(site.engine, "ada-lenet")) == 1  # none of the refused ones stored anything


@pytest.mark.slow
def test_an_upload_that_reads_inverted_digits_is_accepted_with_the_checks_diagnosis(site, monkeypatch):
    """The baseline repackaged so that it computes what a model trained on inverted digits would (mean' = 1 - mean,
    std' = -std, as in test_check_diagnosis): it runs, reads the check's digits badly, and the page says which
    setting fixes it, with the baseline's own 98.5% on the first 2000 test digits."""
    monkeypatch.setattr(checking, "affordable_sample", lambda images_per_second: checking.DIAGNOSIS_IMAGES)
    head, rest = (BASELINE / "entry.toml").read_text().split("[hyperparameters]", 1)
    head = head.replace("mean = 0.1307", f"mean = {1 - 0.1307!r}").replace("std = 0.3081", "std = -0.3081")
    toml = (head + "[hyperparameters]" + rest).encode()
    at = submit(site.ada, "ada-inverted", baseline_files(**{"entry.toml": toml}))
    assert seen(at.success[0].value).startswith("Accepted: ada-inverted version 1 is stored") and not at.error
    diagnosis = [seen(i.value) for i in at.info if seen(i.value).startswith("Diagnosis:")]
    assert len(diagnosis) == 1 and "better when the images are inverted (1-x: black ink on white): 98.5% instead of" \
        in diagnosis[0] and "Set mean = 0.1307 and std = 0.3081 under [constructor] in entry.toml" in diagnosis[0]


@pytest.mark.slow
def test_an_upload_that_forgot_its_normalisation_is_told_the_line_to_add(site, monkeypatch):
    """The club's commonest mistake (tests/data/forgot-normalisation: trained on (x-0.5)/0.5, submitted without
    it) reads 95.6% of the check's digits: accepted, and the page names the fix as harness.check does (on all 2000
    digits, whatever the speed this busy machine measures; see test_check_diagnosis)."""
    monkeypatch.setattr(checking, "affordable_sample", lambda images_per_second: checking.DIAGNOSIS_IMAGES)
    forgot = REPO / "tests" / "data" / "forgot-normalisation"
    at = submit(site.ada, "ada-forgot", [(name, (forgot / name).read_bytes()) for name in FILES])
    assert seen(at.success[0].value).startswith("Accepted: ada-forgot version 1 is stored") and not at.error
    diagnosis = [seen(i.value) for i in at.info if seen(i.value).startswith("Diagnosis:")]
    assert len(diagnosis) == 1, [seen(i.value) for i in at.info]
    assert diagnosis[0].startswith("Diagnosis: your model reads 2.8 points better when the images are normalised as "
                                   "(x-0.5)/0.5: 97.5% instead of 94.7% of the first 2000 MNIST test images")
    assert "Add `x = (x - 0.5) / 0.5` as the first line of Net.forward in model.py" in diagnosis[0]


@pytest.mark.slow
def test_a_staging_folder_left_a_day_ago_is_removed_and_a_recent_one_kept(site):
    import os
    import time

    from harness.common.competition import Competition
    from harness.submit.upload import submit as upload
    old, recent = site.subs / ".upload-dead", site.subs / ".upload-busy"
    for folder in (old, recent):
        (folder / "ada-lenet").mkdir(parents=True)
    day_ago = time.time() - 25 * 3600
    os.utime(old, (day_ago, day_ago))
    assert upload(site.engine, site.subs, "bob-1", site.bob, baseline_files(), Competition()).accepted
    assert not old.exists() and recent.is_dir()


@pytest.mark.slow
def test_two_uploads_at_once_by_one_member_cannot_both_beat_the_hourly_limit(site):
    """The hourly count is reserved under the upload lock before the check runs (seconds), so a second upload started
    meanwhile sees it: with one upload an hour, exactly one of two simultaneous uploads is checked."""
    import threading

    from harness.common.competition import load
    from harness.submit.upload import UploadLimits, submit as upload
    limits, results, start = UploadLimits(per_hour=1), [], threading.Barrier(2)

    def one(name: str) -> None:
        start.wait()
        results.append(upload(site.engine, site.subs, name, site.ada, baseline_files(), load(), limits))

    threads = [threading.Thread(target=one, args=(name,)) for name in ("ada-one", "ada-two")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    accepted = [r for r in results if r.accepted]
    refused = [r for r in results if not r.accepted]
    assert len(accepted) == 1 and len(refused) == 1
    assert refused[0].sentences[0].startswith("You have submitted 1 times in the last hour, the most allowed")
    assert sorted(outcome for _, outcome in uploads(site)) == ["accepted", "refused"]


def test_the_organisers_code_section_shows_a_members_name_as_typed(site, monkeypatch):
    """A name with markdown in it (a link, bold) is shown literally when a code is issued and an entry given."""
    from markdown_it import MarkdownIt

    hostile = "**Mal**](javascript:alert(1))"
    at = unlocked_organiser_page(monkeypatch)
    next(t for t in at.text_input if t.label == "Member's name" and t.key != "give_entry_member").input(hostile)
    next(b for b in at.button if b.label == "Issue a code").click()
    at.run()
    issued = [MarkdownIt().render(s.value) for s in at.success]
    assert MarkdownIt().render(stats.literal(f"Code for {hostile} (shown once; give it to them now):")) in issued
    next(t for t in at.text_input if t.key == "give_entry_name").input("mal-net")
    next(t for t in at.text_input if t.key == "give_entry_member").input(hostile)
    next(b for b in at.button if b.label == "Give").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    rendered = [MarkdownIt().render(s.value) for s in at.success]
    assert MarkdownIt().render(stats.literal(f"mal-net now belongs to {hostile}.")) in rendered
    assert all("<a " not in r and "<strong>" not in r for r in issued + rendered)
    assert f"belongs to {hostile}." in MarkdownIt().render(stats.literal(f"mal-net now belongs to {hostile}."))
    assert members.owners(site.engine).get("mal-net") == hostile


@pytest.mark.slow
def test_guessing_codes_on_the_page_is_limited_and_logged(site):
    """The cheat on the page itself: a visitor types guess after guess at Ada's code. After 10 wrong ones in a
    minute the page refuses every code, Ada's right one included, with one sentence saying when to retry; the
    organiser's audit log counts the 10 wrong codes and the limit once; nothing is uploaded or stored."""
    from collections import Counter

    ident = site.ada.partition("-")[0]
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page("screens/submit.py")
    at.run()
    said = []
    for guess in [f"{ident}-guess{i}" for i in range(12)] + [site.ada]:
        at.text_input[0].input(guess)
        at.text_input[1].input("ada-lenet")
        next(b for b in at.button if b.label == "Check and submit").click()
        at.run()
        said.append(only_error(at))
    assert said[:10] == [members.NOT_VALID] * 10
    assert len(set(said[10:])) == 1 and said[10].startswith(
        "Too many wrong codes from your address and for this code's member in the last minute; try again after ")
    assert said[10].endswith(" UTC.") and said[10].count(".") == 1  # one sentence with the time
    counts = Counter(row["action"] for row in audit.audit_log(site.engine))
    assert (counts["code-wrong"], counts["code-limited"]) == (10, 1)
    assert nothing_stored(site) and uploads(site) == []


@pytest.mark.slow
def test_stride0_tensors_of_two_to_the_62_elements_are_neither_a_crash_nor_a_figure(site, means):
    """The upload that once stopped every run: two float tensors of 2^62 elements over one stored value each. A
    model that loads them strictly fails the check with its one sentence; one that drops them is accepted, and the
    page counts the values stored (the template's 7,840 and one per stride-0 storage), never 9.2e18."""
    import io

    import torch

    from tests.entries import TEMPLATE_CODE, template_weights
    from tests.harness.entries.test_hostile_files import IGNORES_BLOBS, stride0

    buffer = io.BytesIO()
    torch.save(dict(template_weights(means), blob_a=stride0(), blob_b=stride0()), buffer)
    weights = buffer.getvalue()
    assert len(weights) < 100_000
    at = submit(site.ada, "strict", [("model.py", TEMPLATE_CODE.encode()), ("weights.pt", weights)])
    assert only_error(at).startswith("The check failed, so nothing was stored: strict:") and nothing_stored(site)
    at = submit(site.ada, "drops-them", [("model.py", IGNORES_BLOBS.encode()), ("weights.pt", weights)])
    assert seen(at.success[0].value).startswith("Accepted: drops-them version 1 is stored") and not at.error
    shown = " ".join(str(m.value) for m in at.metric) + " ".join(seen(m.value) for m in at.markdown)
    assert "9.2e18" not in shown and "9,223,372" not in shown
    assert stored_entries(site) == ["drops-them"]
