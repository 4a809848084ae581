"""Every way an entry can be broken or hostile ends as that entry's failure with one clear sentence,
and the good entries evaluated in the same run keep their exact results."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness import runner
from tests.entries import TEMPLATE_CODE, before_return, template_predictions, template_weights, write_entry
from tests.harness.entries.test_contract import evaluate, predicted

pytestmark = pytest.mark.sandbox

CASES = {
    # name: (code, weights kind, expected fragment of the error)
    "syntax-error": ("import torch\nclass Net(torch.nn.Module:\n    pass\n", "good", "model.py line 2: syntax error"),
    "no-class": ("import torch\nx = 1\n", "good", "defines no nn.Module subclass"),
    "two-classes": (TEMPLATE_CODE.replace("class Net", "class A") + "\nclass B(nn.Module):\n    pass\n", "good",
                    "defines several nn.Module classes (A, B)"),
    "import-error": ("import not_a_real_package\n", "good", "cannot import not_a_real_package"),
    "no-weights": (TEMPLATE_CODE, None, "has model.py but no weights"),
    "missing-key": (TEMPLATE_CODE, "missing", "missing keys \"fc.weight\""),
    "unexpected-key": (TEMPLATE_CODE, "unexpected", "unexpected keys \"extra.bias\""),
    "shape-mismatch": (TEMPLATE_CODE, "shape", "fc.weight is [10, 100] in the weights but [10, 784] in the model"),
    "pickled-model": (TEMPLATE_CODE, "pickled", "needs pickled Python code to load"),
    "not-a-state-dict": (TEMPLATE_CODE, "list", "does not hold a state_dict"),
    # caught on the worker's first warm-up pass (FIRST_PROBE synthetic images), before any scored image
    "wrong-shape": (before_return("return torch.zeros(len(x), 5)"), "good",
                    "forward returned shape [2, 5] for a batch of 2 on the warm-up images; it must return [2, 10]"),
    "int-output": (before_return("return torch.zeros(len(x), 10, dtype=torch.long)"), "good",
                   "forward returned torch.int64"),
    "nan-output": (before_return("return torch.full((len(x), 10), float('nan'))"), "good", "NaN or infinite values"),
    "not-a-tensor": (before_return("return {'logits': 1}"), "good", "forward returned dict"),
    "raises": (before_return("raise ValueError('kaboom')"), "good",
               "ValueError in the model (model.py line 16): kaboom"),
    "sys-exit": (before_return("import sys\nsys.exit(3)"), "good", "called sys.exit(3)"),
    "os-exit": (before_return("import os\nos._exit(7)"), "good", "exited with code 7"),
    "segfault": (before_return("import ctypes\nctypes.string_at(0)"), "good", "killed by SIGSEGV"),
    "hangs": (before_return("while True:\n    pass"), "good", "took longer than its time limit of 4 s and was stopped"),
    "memory-bomb": (before_return("y = torch.ones(50 * 1024**3 // 4)"), "good", "out of memory"),
    # Stopped by the resident-memory watch ("used more than its memory limit of 1.0 GiB") or, if an allocation outruns
    # the 20 ms poll, by the address-space limit ("out of memory"): either way a memory failure.
    "slow-memory-bomb": (before_return("keep = [torch.ones(64 * 1024**2) for _ in range(100)]"), "good", "memory"),
}


def weights_for(kind, means):
    good = template_weights(means)
    return {
        None: None, "good": good, "missing": {},
        "unexpected": {**good, "extra.bias": torch.zeros(3)},
        "shape": {"fc.weight": torch.zeros(10, 100)},
        "pickled": torch.nn.Linear(2, 2),  # a whole module: needs its class pickled
        "list": [torch.zeros(1)],
    }[kind]


@pytest.fixture(scope="module")
def outcome(tmp_path_factory, small_mnist, means):
    """All cases evaluated in one run (memory limit 1 GiB); the hang in a run of its own with a 4 s limit."""
    results = {}
    for group, timeout in (("hangs", 4), ("rest", 120)):
        tmp = tmp_path_factory.mktemp(group)
        subs = tmp / "subs"
        for name, (code, weights, _) in CASES.items():
            if (name == "hangs") == (group == "hangs"):
                write_entry(subs, name, code=code, weights=weights_for(weights, means))
        write_entry(subs, "good", weights=template_weights(means))
        (subs / "bad-toml").mkdir()
        (subs / "bad-toml" / "entry.toml").write_text("author = \n")
        options = runner.Options(runner.Limits(device="cpu", timeout=timeout, memory=1024 ** 3))
        results[group] = evaluate(tmp, [small_mnist], options)
    return {**results["hangs"], **{k: v for k, v in results["rest"].items() if k != "hangs"}}


@pytest.mark.parametrize("name", sorted(CASES))
def test_broken_entry_fails_with_clear_reason(outcome, name):
    ev = outcome[name]
    assert ev.status == "failed"
    assert CASES[name][2] in ev.error
    assert "\n" not in ev.error.strip()
    assert ev.results == []


def test_malformed_metadata_is_reported_without_running(outcome):
    ev = outcome["bad-toml"]
    assert ev.status == "failed" and "entry.toml is not valid TOML" in ev.error


def test_good_entry_unaffected_by_broken_neighbours(outcome, small_mnist, means):
    ev = outcome["good"]
    assert ev.status == "ok", ev.error
    assert np.array_equal(predicted(ev), template_predictions(small_mnist.images, means))
    assert ev.peak_memory_bytes < 1024 ** 3


def test_links_and_paths_outside_the_entry_are_refused_unread(tmp_path, small_mnist, means):
    """An entry may not make the harness read a file outside its folder (the database, the guest's labels):
    a symbolic link or a ``weights`` path leading out fails the entry, and the host never reads or stores the target."""
    secret = tmp_path / "labels.db"
    secret.write_bytes(b"GUEST-LABELS-" * 100)
    subs = tmp_path / "subs"
    linked = write_entry(subs, "linked-weights", weights=None)
    (linked / "weights.pt").symlink_to(secret)
    extra = write_entry(subs, "linked-extra", weights=template_weights(means))
    (extra / "notes.txt").symlink_to(secret)
    (extra / "data").symlink_to(tmp_path, target_is_directory=True)
    toml = write_entry(subs, "linked-toml", weights=template_weights(means))
    (toml / "entry.toml").symlink_to(secret)
    write_entry(subs, "weights-path", weights=template_weights(means), toml='weights = "../../labels.db"\n')
    write_entry(subs, "good", weights=template_weights(means))
    results = evaluate(tmp_path, [small_mnist])
    sentence = "an entry must hold real files only, so replace each link with a copy of what it points to."
    assert results["linked-weights"].error == f"the entry holds symbolic links (weights.pt); {sentence}"
    assert results["linked-extra"].error == f"the entry holds symbolic links (data, notes.txt); {sentence}"
    assert results["linked-toml"].error == f"the entry holds symbolic links (entry.toml); {sentence}"
    assert "'weights' must name a file inside the entry folder, such as \"weights.pt\", not '../../labels.db'." \
        in results["weights-path"].error
    for name in ("linked-weights", "linked-extra", "linked-toml", "weights-path"):
        assert results[name].status == "failed" and results[name].results == []
    assert results["good"].status == "ok"
    # Nothing of the target reached the store: not in any kept version's files.
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from harness.store.engine import make_engine
    from harness.store.schema import FileBlob, VersionFiles
    with Session(make_engine(f"sqlite:///{tmp_path / 'results.db'}")) as session:
        kept = session.scalars(select(FileBlob.data)).all()
        names = [name for m in session.scalars(select(VersionFiles.manifest)) for name in m]
    assert kept and not any(b"GUEST-LABELS-" in data for data in kept)
    assert "notes.txt" not in names and "weights.pt" in names  # the linked files were not listed either
    assert results["linked-weights"].version.weights_hash == ""  # the link was not hashed through


def test_a_linked_entry_folder_is_left_out(tmp_path, means):
    from harness.entries.discovery import discover
    real = write_entry(tmp_path / "elsewhere", "real", weights=template_weights(means))
    (tmp_path / "subs").mkdir()
    (tmp_path / "subs" / "alias").symlink_to(real, target_is_directory=True)
    write_entry(tmp_path / "subs", "plain", weights=template_weights(means))
    skipped: list[str] = []
    assert list(discover(tmp_path / "subs", skipped)) == ["plain"]
    assert skipped == [f"entry folder 'alias' is left out: it is a symbolic link; move the real folder into "
                       f"{tmp_path / 'subs'} instead."]


def test_the_weights_file_is_a_real_file_inside_the_folder_never_a_link(tmp_path):
    """One rule for the file the harness reads as an entry's weights (for its hash, its parameter count and its
    model): a regular file inside the folder, reached through no symbolic link; otherwise there is none."""
    from harness.contract import EntryMetadata
    from harness.entries import parameters
    from harness.entries.discovery import load_entry, weights_file
    from harness.entries.loading import EntryError, load_model
    state = {"fc.weight": torch.zeros(10, 784), "fc.bias": torch.zeros(10), "bn.running_mean": torch.zeros(10)}

    plain = write_entry(tmp_path, "plain", weights=state, extra={"weights.safetensors": "not read"})
    assert weights_file(plain, EntryMetadata()) == plain / "weights.pt"  # the first of WEIGHT_FILES
    assert parameters.count(load_entry(plain)) == 784 * 10 + 10  # running statistics are not parameters

    named = write_entry(tmp_path, "named", weights=state, weights_name="trained.pt")
    (named / "sub").mkdir()
    torch.save(state, named / "sub" / "w.pt")
    (named / "alias").symlink_to(named / "sub", target_is_directory=True)
    (named / "link.pt").symlink_to(named / "trained.pt")  # a link even to a file inside the folder
    assert weights_file(named, EntryMetadata(weights="trained.pt")) == named / "trained.pt"
    assert weights_file(named, EntryMetadata(weights="sub/w.pt")) == named / "sub" / "w.pt"
    assert weights_file(named, EntryMetadata(weights="link.pt")) is None
    assert weights_file(named, EntryMetadata(weights="alias/w.pt")) is None  # behind a linked folder
    assert weights_file(named, EntryMetadata(weights="nowhere.pt")) is None
    with pytest.raises(EntryError, match=r"^weights file link.pt is missing; save it with torch.save"):
        load_model(named, EntryMetadata(weights="link.pt"), module_name=None)

    linked = write_entry(tmp_path, "linked", weights=None)
    (linked / "weights.pt").symlink_to(named / "trained.pt")
    assert weights_file(linked, EntryMetadata()) is None
    entry = load_entry(linked)
    assert (entry.weights_hash, entry.weights_bytes, parameters.count(entry)) == ("", 0, None)

    code_free = write_entry(tmp_path, "code-free", code=None, weights=state)  # weights.pt but neither model file
    assert weights_file(code_free, EntryMetadata()) is None
    (code_free / "model.pt2").write_bytes(b"archive")
    assert weights_file(code_free, EntryMetadata()) == code_free / "model.pt2"
    assert load_entry(code_free).weights_bytes == len(b"archive")
