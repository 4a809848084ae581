"""The secret set goes in and only predictions come out: an entry answers the public set in one process and the
secret set in a second one, and of the second only the outputs are used before the reveal.

Each attack is written as a member would, a few lines in ``model.py``: printing every image it is handed (the log
as a channel), reading the secret images while it answers the public ones (the public outputs as a channel),
raising an error that quotes them, and sleeping on them (the time as a channel). The references are independent:
the images' own bytes hashed here, and the template matcher's predictions computed with numpy.
"""

from __future__ import annotations

import hashlib
import textwrap

import numpy as np
import pytest

from harness import runner
from harness.data.task import DatasetSpec
from harness.entries.discovery import load_entry
from harness.store import eval_sets, evaluations, members, runs, versions
from harness.store.engine import make_engine
from leaderboard import views
from tests.conftest import evaluate_args
from tests.entries import TEMPLATE_CODE, template_predictions, template_weights, write_entry
from tests.harness.isolation.test_hostile import isolation_mode

pytestmark = pytest.mark.sandbox

MODES = ["sandbox, root layout", "sandbox, user layout", "plain"]
SECRET_SLEEP = 3.0  # seconds the timing cheat sleeps on the secret set

# Prints a short hash of every image it is handed: with the secret images in the log, a member could label them.
PRINTS_IMAGES = TEMPLATE_CODE.replace("import torch\n", "import hashlib\nimport torch\n", 1).replace(
    "        return self.scale", textwrap.indent(textwrap.dedent("""\
        for row in (x * 255).round().to(torch.uint8).cpu().numpy():
            print("seen", hashlib.sha1(row.tobytes()).hexdigest()[:16])
        return self.scale"""), "        "))

# Looks for the secret images wherever they could be while it answers, and marks every answer when it finds them.
READS_SECRET_SET = TEMPLATE_CODE.replace("import torch\n", textwrap.dedent("""\
    import glob
    import torch
    def _secret_in_reach():
        return bool(glob.glob("/in/images_guest.npy") or glob.glob("/tmp/harness-*/*/images_guest.npy")
                    or glob.glob("/tmp/harness-*/images_guest.npy"))
    """), 1).replace("        return self.scale * self.fc(x.flatten(1) - 0.5)", textwrap.indent(textwrap.dedent("""\
        out = self.scale * self.fc(x.flatten(1) - 0.5)
        if _secret_in_reach():
            print("found the secret set")
            out = out * 0 + torch.arange(10.0)  # every answer becomes 9: a signal in the outputs
        return out"""), "        "))

# Fails on the secret set with a message made of it; sleeps on it (its time would say something).
QUOTES_SECRET_SET = TEMPLATE_CODE.replace("import torch\n", "import time\nimport torch\n", 1).replace(
    "        return self.scale", textwrap.indent(textwrap.dedent(f"""\
        if x.shape[0] == 100:  # the secret set here: one batch of 100 (public batches: 120, warm-up: 128)
            time.sleep({SECRET_SLEEP})
            raise ValueError("leaked " + str(int((x * 255).round().sum())))
        return self.scale"""), "        "))

SLEEPS_ON_SECRET_SET = TEMPLATE_CODE.replace("import torch\n", "import time\nimport torch\n", 1).replace(
    "        return self.scale", textwrap.indent(textwrap.dedent(f"""\
        if x.shape[0] == 100:
            time.sleep({SECRET_SLEEP})
        return self.scale"""), "        "))


@pytest.fixture(scope="module")
def secret_set(mnist_test) -> DatasetSpec:
    """100 MNIST test digits standing in for the guest's (the images after the 300 the public set uses)."""
    return DatasetSpec(kind="guest", content_hash="secret-100", labels=mnist_test.labels[300:400],
                       images=mnist_test.images[300:400], source="test")


def run(folder, small_mnist, secret_set) -> evaluations.Record:
    return runner.evaluate_one(load_entry(folder), [small_mnist, secret_set], {"mnist": 1, "guest": 2},
                               runner.Limits(timeout=120, device="cpu"))


def hashes(images: np.ndarray) -> set[str]:
    return {hashlib.sha1(image.tobytes()).hexdigest()[:16] for image in images}


@pytest.mark.parametrize("mode", MODES)
def test_what_an_entry_prints_on_the_secret_set_is_sealed(mode, tmp_path, small_mnist, secret_set, means):
    folder = write_entry(tmp_path / "subs", "printer", code=PRINTS_IMAGES, weights=template_weights(means))
    with isolation_mode(mode):
        record = run(folder, small_mnist, secret_set)
    assert record.status == "ok", record.error
    secret, public = hashes(secret_set.images), hashes(small_mnist.images)
    assert public <= set(record.log.split())  # the public log works: every public image's hash is in it
    assert not secret & set(record.log.split())  # and not one secret image is
    assert secret <= set(record.sealed.log.split())  # they are all in the sealed log, kept for after the reveal
    assert record.sealed.error is None


@pytest.mark.parametrize("mode", ["sandbox, root layout", "plain"])
def test_the_public_outputs_are_made_before_the_secret_set_exists(mode, tmp_path, small_mnist, secret_set, means):
    folder = write_entry(tmp_path / "subs", "reader", code=READS_SECRET_SET, weights=template_weights(means))
    with isolation_mode(mode):
        record = run(folder, small_mnist, secret_set)
    assert record.status == "ok", record.error
    stored_public = record.metrics[1].predicted
    assert np.array_equal(stored_public, template_predictions(small_mnist.images, means))
    assert "found the secret set" not in (record.log or "")
    # The attack itself works: in the phase that holds the secret set it finds it (and marks its answers 9).
    assert "found the secret set" in record.sealed.log
    assert (record.metrics[2].predicted == 9).all()


@pytest.mark.parametrize("mode", MODES)
def test_a_failure_on_the_secret_set_says_only_that(mode, tmp_path, small_mnist, secret_set, means):
    folder = write_entry(tmp_path / "subs", "quoter", code=QUOTES_SECRET_SET, weights=template_weights(means))
    with isolation_mode(mode):
        record = run(folder, small_mnist, secret_set)
    assert record.status == "failed"
    assert record.error == runner.secret_failure()
    assert "leaked" not in (record.log or "") and record.metrics == {}
    total = int(secret_set.images.astype(np.int64).sum())
    assert f"leaked {total}" in record.sealed.error  # kept whole for the organiser, after the reveal
    assert record.seconds < SECRET_SLEEP <= record.sealed.seconds  # the time shown is the public phase's


def test_time_and_memory_shown_are_the_public_phase_s(tmp_path, small_mnist, secret_set, means):
    folder = write_entry(tmp_path / "subs", "sleeper", code=SLEEPS_ON_SECRET_SET, weights=template_weights(means))
    record = run(folder, small_mnist, secret_set)
    assert record.status == "ok", record.error
    assert record.seconds < SECRET_SLEEP <= record.sealed.seconds
    assert record.images_per_second > len(small_mnist.images) / SECRET_SLEEP
    assert record.peak_memory_bytes and record.sealed.peak_memory_bytes


def test_the_sealed_part_is_stored_and_shown_only_after_the_reveal_to_whom_it_belongs(tmp_path, small_mnist,
                                                                                      secret_set, means):
    folder = write_entry(tmp_path / "subs", "printer", code=PRINTS_IMAGES, weights=template_weights(means))
    record = run(folder, small_mnist, secret_set)
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    entry = load_entry(folder)
    run_id = runs.start_run(engine, "cpu", ["test"])
    version_id = versions.ensure_version(engine, entry)
    ids = {spec.kind: eval_sets.ensure_dataset(engine, spec) for spec in (small_mnist, secret_set)}
    record.metrics = {ids["mnist"] if k == 1 else ids["guest"]: m for k, m in record.metrics.items()}
    evaluation_id = evaluations.save_evaluation(engine, run_id=run_id, version_id=version_id, eval_key="k",
                                                record=record)
    secret = hashes(secret_set.images)

    assert evaluations.sealed(engine, evaluation_id, revealed=False) is None
    shown, why = views.sealed_view(engine, evaluation_id, "printer", revealed=False, organiser=True)
    assert shown is None and "sealed until the reveal" in why
    shown, _ = views.sealed_view(engine, evaluation_id, "printer", revealed=True, organiser=True)
    assert secret <= set(shown.log.split())
    ada = members.issue_code(engine, "Ada")
    bob = members.issue_code(engine, "Bob")
    members.give_entry(engine, "printer", "Ada")
    for code in (bob, "x"):
        assert views.sealed_view(engine, evaluation_id, "printer", revealed=True, organiser=False,
                                 member_code=code)[0] is None
    shown, _ = views.sealed_view(engine, evaluation_id, "printer", revealed=True, organiser=False, member_code=ada)
    assert secret <= set(shown.log.split())
    # What every reader of the board gets holds the public log alone.
    from harness.common.competition import Competition
    from harness.scoring import board
    summary = board.read(engine, Competition(), is_revealed=True).summaries[evaluation_id]
    assert not secret & set(summary.log.split())


# The public test set memorised: a hash of each image's exact pixels to its label, the template matcher elsewhere.
MEMORISER_CODE = TEMPLATE_CODE.replace("        self.fc = nn.Linear(784, 10, bias=False)\n", """\
        self.fc = nn.Linear(784, 10, bias=False)
        self.register_buffer("w", torch.zeros(784, dtype=torch.int64))
        self.register_buffer("keys", torch.zeros(10000, dtype=torch.int64))
        self.register_buffer("labels", torch.zeros(10000, dtype=torch.int64))
""").replace("        return self.scale * self.fc(x.flatten(1) - 0.5)", """\
        out = self.scale * self.fc(x.flatten(1) - 0.5)
        key = ((x * 255).round().long().flatten(1) * self.w).sum(1)
        at = torch.searchsorted(self.keys, key).clamp(max=len(self.keys) - 1)
        known = self.keys[at] == key
        out[known] = F.one_hot(self.labels[at[known]], 10).float() * 100
        return out""")


def memoriser_weights(means: np.ndarray, images: np.ndarray, labels: np.ndarray) -> dict:
    import torch
    w = np.random.default_rng(1).integers(1, 2 ** 20, size=784, dtype=np.int64)
    keys = images.reshape(len(images), -1).astype(np.int64) @ w
    order = np.argsort(keys)
    return dict(template_weights(means), w=torch.from_numpy(w), keys=torch.from_numpy(keys[order]),
                labels=torch.from_numpy(labels[order].astype(np.int64)))


def test_an_entry_that_memorised_the_public_test_set_is_flagged(tmp_path, mnist_dir, mnist_test, means, capsys):
    import csv
    import json

    from harness import evaluate, export
    subs = tmp_path / "subs"
    write_entry(subs, "honest", weights=template_weights(means))
    write_entry(subs, "memoriser", code=MEMORISER_CODE,
                weights=memoriser_weights(means, mnist_test.images, mnist_test.labels))
    (tmp_path / "no-guest").mkdir()
    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    argv = evaluate_args(subs, mnist_dir, tmp_path / "no-guest", db)
    assert evaluate.main(argv + ["--json"]) == 0
    out = capsys.readouterr()
    entries = {e["name"]: e for e in json.loads(out.out)["entries"]}
    cheat, honest = entries["memoriser"], entries["honest"]
    assert cheat["mnist"]["accuracy"] == 1.0  # the attack works: it reads every public digit right
    assert cheat["rank"] == 1
    reference = (template_predictions(mnist_test.images, means) == mnist_test.labels).mean()
    assert honest["mnist"]["accuracy"] == pytest.approx(reference)
    memo = cheat["memorisation"]
    assert memo["flagged"] is True and memo["pairs"] == 1000 and memo["p"] < 1e-6
    # Its copies fall back to the template matcher: wrong about as often as the template is (numpy's figure above),
    # within five standard deviations of a random 1,000 of the 10,000.
    assert memo["right_only_as_copy"] == 0
    assert abs(memo["right_only_as_given"] - 1000 * (1 - reference)) < 5 * (1000 * reference * (1 - reference)) ** .5
    assert honest["memorisation"]["flagged"] is False
    assert honest["memorisation"]["right_only_as_given"] + honest["memorisation"]["right_only_as_copy"] <= 10
    assert "MEMORISED? memoriser" in out.err and "MEMORISED? honest" not in out.err

    assert export.main(["--db", db, "--out", str(tmp_path / "out"), "--signed-off-by", "Org"]) == 0
    with open(tmp_path / "out" / "standings.csv", newline="") as fh:
        rows = {r["name"]: r for r in csv.DictReader(fh)}
    assert rows["memoriser"]["memorised"] == "True" and rows["honest"]["memorised"] == "False"
    assert int(rows["memoriser"]["memo_right_only_as_given"]) == memo["right_only_as_given"]


def test_the_changed_copies_differ_from_their_originals_by_nothing_a_person_sees(mnist_test):
    """Checked pixel by pixel against the originals: every copy differs (so an exact table misses it), by at most
    3 of 255 on the ink's anti-aliased edge (which stays edge), 4 specks of 1-2 of 255 at least 3 pixels from any ink,
    and nothing else; the chosen images are distinct."""
    from harness.data.copies import changed_copies
    chosen, copies = changed_copies(mnist_test.images, 1000, np.random.default_rng(7))
    assert len(set(chosen.tolist())) == 1000 and copies.dtype == np.uint8
    original, copy = mnist_test.images[chosen].astype(int), copies.astype(int)
    edge, paper = (original > 0) & (original < 255), original == 0
    assert (np.abs(copy - original)[edge] <= 3).all() and ((copy[edge] > 0) & (copy[edge] < 255)).all()
    assert (copy[original == 255] == 255).all()
    specks = paper & (copy > 0)
    assert (specks.sum(axis=(1, 2)) == 4).all() and set(np.unique(copy[specks])) <= {1, 2}
    for image, spots in zip(original, specks, strict=True):
        ink = np.argwhere(image > 0)
        for y, x in np.argwhere(spots):
            assert np.abs(ink - [y, x]).max(axis=1).min() >= 3  # Chebyshev distance to the nearest ink pixel
    assert all(not np.array_equal(a, b) for a, b in zip(original, copy, strict=True))
