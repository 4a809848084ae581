"""Hostile weights files against the host's parameter count: forged figures, figures no store can hold, malformed
archives and zip bombs. The host counts every storage once by the bytes it holds, reads an archive the way
``torch.export.load`` does, and refuses what it cannot count with one sentence; a good neighbour is still scored.

References are independent of the code under test: the numel of a float model's parameters summed by hand,
``torch.export.load``'s own program, numpy's template predictions and a child process's peak RSS read by ``wait4``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from harness import runner
from harness.entries import parameters
from harness.entries.discovery import load_entry
from tests.conftest import REPO, evaluate_args, evaluate_command
from tests.entries import TEMPLATE_CODE, template_predictions, template_weights, write_entry
from tests.harness.entries.test_contract import evaluate, predicted

LENET_CODE = '''
import torch
from torch import nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x.flatten(1))))))
'''

# The forgery of the issue: the weights stored as int32 bit patterns, turned back into floats when loaded.
LENET_BITS_CODE = LENET_CODE + '''
    def load_state_dict(self, state, strict=True, assign=False):
        return super().load_state_dict({k: v.view(torch.float32) for k, v in state.items()}, strict, assign)
'''

# The template, which drops the keys starting with "blob" before loading: it runs, whatever those tensors claim.
IGNORES_BLOBS = TEMPLATE_CODE + '''
    def load_state_dict(self, state, strict=True, assign=False):
        return super().load_state_dict({k: v for k, v in state.items() if not k.startswith("blob")}, strict, assign)
'''


def lenet() -> nn.Module:
    namespace: dict = {}
    exec(textwrap.dedent(LENET_CODE), namespace)  # the test's own model code
    torch.manual_seed(0)
    return namespace["Net"]().eval()


def by_hand(model: nn.Module) -> int:
    """The independent reference: the values in the float model's parameters, summed here."""
    return sum(p.numel() for p in model.parameters())


def stride0(n: int = 2 ** 62) -> torch.Tensor:
    """A float tensor of ``n`` elements over a storage of one (4 bytes on disk)."""
    return torch.empty(0).set_(torch.zeros(1).untyped_storage(), 0, (n,), (0,))


def one_sentence(text: str | None) -> bool:
    return bool(text) and "\n" not in text and "Traceback" not in text and text.rstrip().endswith(".")


def write_pt2(folder: Path, model: nn.Module) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.pt2"
    torch.export.save(torch.export.export(model, (torch.zeros(1, 1, 28, 28),)), path)
    return path


def archive_root(path: Path) -> str:
    with zipfile.ZipFile(path) as archive:
        return archive.namelist()[0].split("/")[0] + "/"


def copy_zip(src: Path, dst: Path, replace: dict[str, bytes] | None = None, first: list | None = None,
             bomb: tuple[str, bytes, bytes, int] | None = None) -> None:
    """Copy a zip archive; ``replace``: name -> new bytes; ``first``: (name, bytes) put before every member;
    ``bomb``: (name, head, fill, mib) replaces that member by ``head`` then ``mib`` MiB of ``fill``, deflated."""
    replace = replace or {}
    with zipfile.ZipFile(src) as old, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as new:
        for name, data in first or []:
            new.writestr(name, data)
        for info in old.infolist():
            if bomb and info.filename == bomb[0]:
                name, head, fill, mib = bomb
                member = zipfile.ZipInfo(name)
                member.compress_type = zipfile.ZIP_DEFLATED
                with new.open(member, "w", force_zip64=True) as out:
                    out.write(head)
                    chunk = fill * 2 ** 20
                    for _ in range(mib):
                        out.write(chunk)
                continue
            new.writestr(info.filename, replace.get(info.filename, old.read(info.filename)))


def weights_config(path: Path) -> tuple[str, dict]:
    """The name and content of the weights config torch.export.load reads."""
    name = archive_root(path) + "data/weights/model_weights_config.json"
    with zipfile.ZipFile(path) as archive:
        return name, json.loads(archive.read(name))


# --- forged figures -------------------------------------------------------------------------------------------

def test_weights_stored_as_int32_bit_patterns_count_as_the_float_ones(tmp_path):
    model = lenet()
    state = model.state_dict()
    plain = write_entry(tmp_path, "lenet", code=LENET_CODE, weights=state)
    bits = write_entry(tmp_path, "lenet-bits", code=LENET_BITS_CODE,
                       weights={k: v.view(torch.int32) for k, v in state.items()})
    assert by_hand(model) == 61706
    assert parameters.measure(load_entry(plain)) == (by_hand(model), None)
    assert parameters.measure(load_entry(bits)) == (by_hand(model), None)


def test_every_dtype_counts_and_a_shared_or_expanded_storage_counts_once(tmp_path):
    """bool, int and complex tensors count; views of one storage count it once; BatchNorm's statistics do not."""
    shared = torch.arange(12, dtype=torch.float32)
    state = {"a": shared, "a_view": shared[2:5], "a_t": shared.view(3, 4).t(), "flags": torch.ones(7, dtype=torch.bool),
             "ids": torch.zeros(5, dtype=torch.int64), "z": torch.zeros(3, dtype=torch.complex64),
             "huge": stride0(), "bn.running_mean": torch.zeros(100), "bn.num_batches_tracked": torch.tensor(3)}
    folder = write_entry(tmp_path, "mixed", weights=state)
    assert parameters.measure(load_entry(folder)) == (12 + 7 + 5 + 3 + 1, None)


def test_a_decoy_weights_config_first_in_the_archive_is_not_what_is_counted(tmp_path):
    model = lenet()
    real = write_pt2(tmp_path / "real", model)
    name, config = weights_config(real)
    decoy = {"config": {"w": {"path_name": "weight_0", "is_param": True, "use_pickle": False,
                              "tensor_meta": {"dtype": 7, "sizes": [{"as_int": -5_000_000}]}}}}
    folder = tmp_path / "decoy"
    folder.mkdir()
    copy_zip(real, folder / "model.pt2", first=[(archive_root(real) + "extra/data/weights/model_weights_config.json",
                                                 json.dumps(decoy).encode())])
    with zipfile.ZipFile(folder / "model.pt2") as archive:
        assert archive.namelist()[0].endswith("model_weights_config.json")  # the decoy comes first
    exported = torch.export.load(str(folder / "model.pt2"))  # torch ignores the decoy and loads the real program
    reference = sum(p.numel() for p in exported.parameters())
    assert reference == by_hand(model) == sum(t.numel() for t in exported.state_dict.values())
    assert parameters.measure(load_entry(folder)) == (reference, None)
    assert parameters.measure(load_entry(real.parent)) == (reference, None)


def test_a_stride0_tensor_in_a_pt2_counts_the_bytes_it_holds(tmp_path):
    """Sizes in the weights config claim 2^62 values over one stored float: one value is counted."""
    model = nn.Linear(784, 10)
    real = write_pt2(tmp_path / "real", nn.Sequential(nn.Flatten(), model))
    name, config = weights_config(real)
    first = next(iter(config["config"].values()))
    first["tensor_meta"]["sizes"] = [{"as_int": 2 ** 62}]
    first["tensor_meta"]["strides"] = [{"as_int": 0}]
    folder = tmp_path / "claims"
    folder.mkdir()
    copy_zip(real, folder / "model.pt2", replace={name: json.dumps(config).encode()})
    assert parameters.measure(load_entry(folder)) == (784 * 10 + 10, None)


# --- malformed archives ------------------------------------------------------------------------------------------

MALFORMED = {
    "a list": lambda config: json.dumps([config]),
    "integer sizes": lambda config: json.dumps({"config": {k: dict(v, tensor_meta=dict(v["tensor_meta"], sizes=7))
                                                           for k, v in config["config"].items()}}),
    "200,000 deep": lambda config: "[" * 200_000 + "]" * 200_000,
    "a config without entries": lambda config: json.dumps({"config": 5}),
    "an entry that is a string": lambda config: json.dumps({"config": {"w": "weight_0"}}),
}


@pytest.fixture(scope="module")
def malformed(tmp_path_factory) -> Path:
    """A folder of entries: the template twice (good neighbours) and a .pt2 with each malformed weights config."""
    subs = tmp_path_factory.mktemp("malformed") / "subs"
    real = write_pt2(subs.parent / "real", lenet())
    name, config = weights_config(real)
    for i, make in enumerate(MALFORMED.values()):
        (subs / f"bad-{i}").mkdir(parents=True)
        copy_zip(real, subs / f"bad-{i}" / "model.pt2", replace={name: make(config).encode()})
    return subs


def test_malformed_pt2_configs_are_one_sentence_each_from_the_count(malformed):
    for i, what in enumerate(MALFORMED):
        count, sentence = parameters.measure(load_entry(malformed / f"bad-{i}"))
        assert count is None and one_sentence(sentence), (what, sentence)
        assert "model.pt2" in sentence and "torch.export.save" in sentence, (what, sentence)


@pytest.mark.slow
def test_malformed_pt2_entries_fail_alone_and_their_neighbours_are_scored(malformed, small_mnist, means, tmp_path):
    subs = tmp_path / "subs"
    for folder in malformed.iterdir():
        (subs / folder.name).mkdir(parents=True)
        (subs / folder.name / "model.pt2").write_bytes((folder / "model.pt2").read_bytes())
    write_entry(subs, "good", weights=template_weights(means))
    write_entry(subs, "zz-good", weights=template_weights(means))
    results = evaluate(tmp_path, [small_mnist], runner.Options(runner.Limits(device="cpu", timeout=120)))
    expected = template_predictions(small_mnist.images, means)
    for name in ("good", "zz-good"):
        assert results[name].status == "ok", results[name].error
        assert (predicted(results[name]) == expected).all() and results[name].params == 7840
    for i, what in enumerate(MALFORMED):
        bad = results[f"bad-{i}"]
        assert bad.status == "failed" and bad.params is None and bad.error and "model.pt2" in bad.error, what


# --- figures no store can hold, through the command line ---------------------------------------------------------

@pytest.mark.slow
def test_stride0_tensors_through_harness_evaluate(tmp_path, means, mnist_dir, mnist_test):
    """Two float tensors of 2^62 elements on 8 bytes: refused by the model, the entry fails with one sentence; taken
    by a model that ignores them, the count is the values stored (7840 + one per stride-0 storage). The neighbour's
    predictions are the numpy reference's and the command ends normally."""
    subs = tmp_path / "subs"
    blobs = {"blob_a": stride0(), "blob_b": stride0()}
    write_entry(subs, "good", weights=template_weights(means))
    write_entry(subs, "stride0", weights=dict(template_weights(means), **blobs))
    write_entry(subs, "stride0-taken", code=IGNORES_BLOBS, weights=dict(template_weights(means), **blobs))
    assert (subs / "stride0" / "weights.pt").stat().st_size < 100_000
    mystery = tmp_path / "mystery"
    mystery.mkdir()
    done = subprocess.run(evaluate_command(*evaluate_args(subs, mnist_dir, mystery, tmp_path / "lb.db", "--json")),
                          cwd=REPO, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    rows = {row["name"]: row for row in json.loads(done.stdout)["entries"]}
    assert rows["good"]["status"] == "ok" and rows["good"]["params"] == 7840
    expected = template_predictions(mnist_test.images, means)
    assert rows["good"]["mnist"]["correct"] == int((expected == mnist_test.labels).sum())
    assert rows["stride0"]["status"] == "failed" and one_sentence(rows["stride0"]["error"]), rows["stride0"]
    assert rows["stride0"]["params"] is None
    assert rows["stride0-taken"]["status"] == "ok" and rows["stride0-taken"]["params"] == 7840 + 2
    assert rows["stride0-taken"]["mnist"]["correct"] == rows["good"]["mnist"]["correct"]


def test_a_figure_the_store_cannot_hold_fails_that_entry_alone(tmp_path, small_mnist, means, monkeypatch):
    """Were a count ever to overflow the store's integer (2^63), that entry's failure is stored with one sentence and
    the run goes on to score its neighbour."""
    subs = tmp_path / "subs"
    write_entry(subs, "a-huge", weights=template_weights(means))
    write_entry(subs, "good", weights=template_weights(means))
    measure = parameters.measure
    monkeypatch.setattr(parameters, "measure",
                        lambda entry: (2 ** 63, None) if entry.name == "a-huge" else measure(entry))
    results = evaluate(tmp_path, [small_mnist], runner.Options(runner.Limits(device="cpu", timeout=120)))
    assert results["a-huge"].status == "failed" and one_sentence(results["a-huge"].error)
    assert "could not be stored" in results["a-huge"].error and results["a-huge"].params is None
    assert results["good"].status == "ok" and results["good"].params == 7840
    assert (predicted(results["good"]) == template_predictions(small_mnist.images, means)).all()


# --- zip bombs: the host's memory, read from outside ---------------------------------------------------------------

BOMB_MIB = 2048
AS_LIMIT = 4608 * 2 ** 20  # torch alone maps about 3.1 GB; a regression fails here rather than filling the machine
COUNT_IN_CHILD = textwrap.dedent("""
    import json, resource, sys
    from pathlib import Path
    resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
    import torch
    from harness.entries import parameters
    from harness.entries.discovery import load_entry
    print(json.dumps(parameters.measure(load_entry(Path(sys.argv[1])))))
""")


def count_in_child(folder: Path, out: Path) -> tuple[list, int]:
    """``measure`` of the entry in a child process limited to AS_LIMIT: (its answer, its peak RSS in bytes)."""
    with open(out, "w") as fh:
        child = subprocess.Popen([sys.executable, "-c", COUNT_IN_CHILD.format(limit=AS_LIMIT), str(folder)], cwd=REPO,
                                 stdout=fh, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONPATH=str(REPO)))
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    text = out.read_text()
    assert child.returncode == 0, text[-2000:]
    return json.loads(text.splitlines()[-1]), usage.ru_maxrss * 1024


@pytest.fixture(scope="module")
def bombs(tmp_path_factory, means) -> dict[str, Path]:
    """A weights.pt whose tensor's storage is a 2 GiB zero-filled member (2 MB on disk), a .pt2 whose weights config
    ends in 2 GiB of spaces, and the honest files they were made from."""
    root = tmp_path_factory.mktemp("bombs")
    honest = write_entry(root, "honest", weights={"fc.weight": template_weights(means)["fc.weight"],
                                                  "blob": torch.zeros(70_000)})
    with zipfile.ZipFile(honest / "weights.pt") as archive:
        pickle_name = next(n for n in archive.namelist() if n.endswith("data.pkl"))
        pickle = archive.read(pickle_name)
        blob_key = str(max(int(n.rsplit("/", 1)[1]) for n in archive.namelist() if "/data/" in n and
                           n.rsplit("/", 1)[1].isdigit()))
    old, new = b"J" + (70_000).to_bytes(4, "little"), b"J" + (BOMB_MIB * 2 ** 18).to_bytes(4, "little")
    assert old in pickle
    bomb_pt = root / "bomb-pt"
    bomb_pt.mkdir()
    (bomb_pt / "model.py").write_text(TEMPLATE_CODE)
    copy_zip(honest / "weights.pt", bomb_pt / "weights.pt", replace={pickle_name: pickle.replace(old, new)},
             bomb=(pickle_name.rsplit("/", 1)[0] + "/data/" + blob_key, b"", b"\0", BOMB_MIB))
    real_pt2 = write_pt2(root / "honest-pt2", lenet())
    name, config = weights_config(real_pt2)
    bomb_pt2 = root / "bomb-pt2"
    bomb_pt2.mkdir()
    copy_zip(real_pt2, bomb_pt2 / "model.pt2", bomb=(name, json.dumps(config).encode(), b" ", BOMB_MIB))
    return {"honest": honest, "bomb-pt": bomb_pt, "honest-pt2": real_pt2.parent, "bomb-pt2": bomb_pt2}


@pytest.mark.sandbox
@pytest.mark.parametrize("kind", ["pt", "pt2"])
def test_a_zip_bomb_is_refused_before_it_is_read(bombs, kind, tmp_path):
    bomb = bombs[f"bomb-{kind}"]
    honest = bombs["honest" if kind == "pt" else "honest-pt2"]
    weights = bomb / ("weights.pt" if kind == "pt" else "model.pt2")
    with zipfile.ZipFile(weights) as archive:
        assert weights.stat().st_size < 5 * 2 ** 20 < 2 ** 31 <= max(i.file_size for i in archive.infolist())
    (count, sentence), peak = count_in_child(bomb, tmp_path / "bomb.txt")
    (baseline_count, none), baseline = count_in_child(honest, tmp_path / "honest.txt")
    assert baseline_count > 0 and none is None
    assert count is None and one_sentence(sentence), sentence
    assert peak < baseline + 300 * 2 ** 20, (peak, baseline)
