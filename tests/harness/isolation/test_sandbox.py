"""Hostile entries inside the bubblewrap sandbox: every attempt is refused or stopped with a clear reason,
and a good entry evaluated in the same run keeps its exact predictions.

Entries that try something the sandbox must refuse raise if it *succeeded* (so they fail only if the
sandbox leaks) and print what they saw, which the tests read back from the entry's stored log. The entry that
writes only reports what it wrote: a write is judged by what reached the host, since a path under /tmp (a
checkout there, say) may exist inside the sandbox's private /tmp and take the write harmlessly.
"""

from __future__ import annotations

import os
import socket
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from harness import runner
from harness.contract import EntryMetadata
from harness.isolation import process as isolation, sandbox, sandbox_command
from harness.isolation.inside import sandbox_server
from tests.conftest import REPO
from tests.entries import before_return, template_predictions, template_weights, write_entry
from tests.harness.entries.test_contract import evaluate, predicted

pytestmark = pytest.mark.sandbox


@pytest.fixture(scope="module", params=["root harness", "user harness"])
def box(request):
    """The sandbox every test here runs through, in both layouts: under a root harness entries drop to nobody; under
    a user's harness they keep that user's identity in a user namespace. Root runs the second one too (as a
    stand-in uid), so that CI, which runs as root, checks what most clubs will run."""
    reason = sandbox.unavailable_reason()
    if reason:
        pytest.skip(f"bubblewrap sandbox unavailable here: {reason}")
    as_root = request.param == "root harness"
    if as_root and os.getuid() != 0:
        pytest.skip("the tests run as a user: the root layout cannot be started")
    if as_root == (os.getuid() == 0):
        yield sandbox.shared([])
        return
    sandbox.close_shared()
    own = sandbox.Sandbox([], as_root=False)
    sandbox._box = own
    try:
        yield own
    finally:
        sandbox.close_shared()


def stand_in(box: sandbox.Sandbox) -> bool:
    """Root running the user layout: the entry is root outside its namespace, where the kernel does not apply
    RLIMIT_NPROC to root, so a fork bomb would not be stopped here (it is under a real user: tested as one)."""
    return not box.as_root and os.getuid() == 0


def uid_inside(box: sandbox.Sandbox) -> int:
    if box.as_root:
        return sandbox_server.NOBODY
    return sandbox_command.STAND_IN_UID if os.getuid() == 0 else os.getuid()


def attempts(paths: list[str], action: str, on_success: str = "raise RuntimeError('sandbox leak: ' + path)") -> str:
    """Forward code that tries ``action`` on each path, prints each refusal and raises on any success (or runs
    ``on_success``)."""
    return before_return(textwrap.dedent(f"""
        import os
        for path in {paths!r}:
            try:
                {action}
            except OSError as exc:
                print('refused', path, type(exc).__name__)
            else:
                {on_success}
    """))


READ = "os.listdir(path) if os.path.isdir(path) else open(path, 'rb').read(1)"
WRITE = "open(path, 'ab').write(b'pwned')"


def connect_code(port: int) -> str:
    return before_return(textwrap.dedent(f"""
        import socket
        for address in [('127.0.0.1', {port}), ('1.1.1.1', 53)]:
            s = socket.socket()
            s.settimeout(2)
            try:
                s.connect(address)
            except OSError as exc:
                print('refused', address[0], type(exc).__name__)
            else:
                raise RuntimeError('sandbox leak: connected to ' + address[0])
    """))


LEAVES_SCRATCH = before_return(textwrap.dedent("""
    import os
    for top in ('/tmp', '/dev/shm'):
        if os.access(top, os.W_OK) and not os.path.exists(top + '/left-behind.txt'):  # once, on the first batch
            os.makedirs(top + '/locked/inner')
            open(top + '/left-behind.txt', 'w').write('for the next entry')
            open(top + '/locked/inner/deep.txt', 'w').write('for the next entry')
            os.chmod(top + '/locked/inner', 0o500)
            os.chmod(top + '/locked', 0o500)
    print('left', sorted(os.listdir('/tmp')))
"""))
FINDS_SCRATCH = before_return(textwrap.dedent("""
    import os
    for top in ('/tmp', '/dev/shm'):
        for name in ('left-behind.txt', 'locked'):
            if os.path.lexists(os.path.join(top, name)):
                raise RuntimeError('sandbox leak: ' + os.path.join(top, name))
"""))
FORK_BOMB = before_return("import os\nwhile True:\n    os.fork()")
LEAVES_PROCESS = before_return("import os, time\nif os.fork() == 0:\n    time.sleep(3600)")
MEMORY_50GB = before_return("y = torch.ones(50 * 1024**3 // 4)")
SPINS = before_return("while True:\n    pass")


@pytest.fixture(scope="module")
def hostile(box, tmp_path_factory, small_mnist, means, mnist_dir):
    """All hostile entries and a good one in one run (the spinner in a run of its own with a 4 s limit)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    runs, paths = {}, {}
    for group, timeout in (("spins", 4), ("rest", 60)):
        tmp = tmp_path_factory.mktemp(group)
        subs = tmp / "subs"
        good = write_entry(subs, "good", weights=template_weights(means))
        weights = template_weights(means)
        if group == "spins":
            write_entry(subs, "spins", code=SPINS, weights=weights)
        else:
            guest = sorted(p for p in (REPO / "mystery_digits").rglob("*") if p.is_file())[:1]
            paths = {
                "read": [str(REPO / "mystery_digits"), *map(str, guest), str(tmp / "results.db"),
                         str(mnist_dir / "t10k-labels-idx1-ubyte.gz"), str(REPO.parent / "shared"),
                         *home_files(), str(REPO / "README.md"), str(good / "weights.pt"),
                         f"{sandbox_server.ENTRIES}/good/weights.pt"],
                "write": [str(REPO / "sandbox-pwned.txt"), "/sandbox-pwned.txt", str(tmp / "results.db"),
                          str(good / "pwned.txt"),
                          f"{sandbox_server.ENTRIES}/writes/pwned.txt", "/usr/pwned.txt"],
            }
            write_entry(subs, "reads", code=attempts(paths["read"], READ), weights=weights)
            write_entry(subs, "writes", code=attempts(paths["write"], WRITE, "print('wrote', path)"), weights=weights)
            write_entry(subs, "connects", code=connect_code(port), weights=weights)
            if not stand_in(box):
                write_entry(subs, "fork-bomb", code=FORK_BOMB, weights=weights)
            write_entry(subs, "scratch-1-leaves", code=LEAVES_SCRATCH, weights=weights)  # evaluated in name order
            write_entry(subs, "scratch-2-finds", code=FINDS_SCRATCH, weights=weights)
            write_entry(subs, "leaves-process", code=LEAVES_PROCESS, weights=weights)
            write_entry(subs, "memory-50gb", code=MEMORY_50GB, weights=weights)
        options = runner.Options(runner.Limits(device="cpu", timeout=timeout, memory=2 * 1024 ** 3))
        runs[group] = evaluate(tmp, [small_mnist], options)
        if group == "rest":
            db_path = tmp / "results.db"
            db_bytes = db_path.read_bytes()
    listener.settimeout(0)
    try:
        listener.accept()
        accepted = True
    except BlockingIOError:
        accepted = False
    listener.close()
    return {"spins": runs["spins"], "rest": runs["rest"], "paths": paths, "subs": subs, "accepted": accepted,
            "db_path": db_path, "db_bytes": db_bytes, "left": box.entry_processes()}


def home_files() -> list[str]:
    """Files in the home directory outside the Python installation (which may live there, e.g. pyenv)."""
    prefix = Path(os.path.realpath(sys.base_prefix))
    return [str(p) for p in sorted(Path.home().iterdir()) if p.is_file() and not prefix.is_relative_to(p)][:2]


def refusals(log: str) -> list[str]:
    return [line for line in log.splitlines() if line.startswith("refused ")]


def test_reads_of_labels_database_repo_home_and_other_entries_are_refused(hostile):
    ev = hostile["rest"]["reads"]
    assert ev.status == "ok", ev.error
    seen = refusals(ev.log)
    for path in hostile["paths"]["read"]:
        assert any(line.startswith(f"refused {path} ") for line in seen), (path, ev.log)
    assert all(line.endswith(("FileNotFoundError", "PermissionError")) for line in seen)


def test_writes_into_repo_database_and_entries_are_refused(hostile):
    ev = hostile["rest"]["writes"]
    assert ev.status == "ok", ev.error
    lines = ev.log.splitlines()
    for path in hostile["paths"]["write"]:
        host = sandbox.host_paths(path, hostile["subs"] / "writes")  # the real file, as messages and logs name it
        refused = any(line.startswith(f"refused {host} ") for line in lines)
        wrote = f"wrote {host}" in lines
        assert refused != wrote, (path, ev.log)  # every attempt reported, once per batch, the same way
        # a write may succeed only where the sandbox has its private /tmp (a checkout under /tmp is recreated
        # there), and it must not reach the host: the real file is absent after the run
        assert refused or Path(path).is_relative_to("/tmp"), (path, ev.log)
        if path != str(hostile["db_path"]):
            assert not Path(host).exists(), host
    assert b"pwned" not in hostile["db_bytes"]  # the stored results: the database the run wrote


def test_no_entry_finds_what_another_left_in_tmp(hostile):
    leaves, finds = hostile["rest"]["scratch-1-leaves"], hostile["rest"]["scratch-2-finds"]
    assert leaves.status == "ok", leaves.error
    assert "left-behind.txt" in leaves.log and "locked" in leaves.log  # it did leave them
    assert finds.status == "ok", finds.error


def test_network_is_unreachable(hostile):
    ev = hostile["rest"]["connects"]
    assert ev.status == "ok", ev.error
    seen = refusals(ev.log)
    assert {line.split()[1] for line in seen} == {"127.0.0.1", "1.1.1.1"}  # both addresses refused ...
    assert len(seen) % 2 == 0 and len(seen) >= 2  # ... on every batch
    assert hostile["accepted"] is False  # the test server never saw a connection


def test_fork_bomb_hits_the_process_limit(box, hostile):
    if stand_in(box):
        pytest.skip("root standing in for a user is not subject to RLIMIT_NPROC (see stand_in)")
    ev = hostile["rest"]["fork-bomb"]
    assert ev.status == "failed"
    assert "process limit" in ev.error, ev.error
    assert "\n" not in ev.error.strip()


def test_memory_bomb_is_stopped(hostile):
    ev = hostile["rest"]["memory-50gb"]
    assert ev.status == "failed" and "out of memory" in ev.error, ev.error


def test_spinning_entry_is_stopped_by_the_timeout(hostile):
    ev = hostile["spins"]["spins"]
    assert ev.status == "failed" and "took longer than its time limit of 4 s and was stopped" in ev.error, ev.error


def test_no_entry_process_survives_its_evaluation(hostile):
    assert hostile["rest"]["leaves-process"].status == "ok"
    assert hostile["left"] == []


@pytest.mark.parametrize("group", ["spins", "rest"])
def test_good_entry_unaffected_by_hostile_neighbours(hostile, group, small_mnist, means):
    ev = hostile[group]["good"]
    assert ev.status == "ok", ev.error
    assert np.array_equal(predicted(ev), template_predictions(small_mnist.images, means))


def test_entry_runs_unprivileged_in_its_own_view(box, tmp_path):
    code = before_return(textwrap.dedent("""
        import os
        print('uid', os.getuid())
        print('root', sorted(os.listdir('/')))
        print('entries', os.listdir('/entries'))
    """))
    folder = write_entry(tmp_path / "subs", "probe", code=code, weights={"fc.weight": torch.zeros(10, 784)})
    write_entry(tmp_path / "subs", "neighbour", weights={"fc.weight": torch.zeros(10, 784)})
    np.save(tmp_path / "images_mnist.npy", np.zeros((4, 1, 28, 28), np.uint8))
    outcome = isolation.run_isolated(folder, EntryMetadata(), {"mnist": tmp_path / "images_mnist.npy"},
                                     tmp_path / "out", device="cpu", timeout=30, sandboxed=True)
    assert outcome.sandboxed is True
    assert outcome.result["status"] == "ok", outcome.log
    lines = outcome.log.splitlines()
    assert lines[0] == f"uid {uid_inside(box)}"
    # the top-level folders of the Python install and the harness checkout (e.g. /work, or wherever CI clones)
    code_tops = {Path(p).parts[1] for p in sandbox_command.python_paths() + [str(sandbox_command.HARNESS_DIR)]}
    assert lines[1] == "root " + str(sorted({"bin", "dev", "entries", "etc", "in", "lib", "lib64", "out", "proc",
                                             "root", "sbin", "tmp", "usr"} | code_tops
                                            | ({"sys"} if os.path.exists("/dev/nvidiactl") else set())))
    assert lines[2] == "entries ['probe']"


def test_outputs_that_are_links_are_not_followed(tmp_path):
    secret = tmp_path / "labels.npy"
    np.save(secret, np.arange(10))
    (tmp_path / "outputs_mnist.npy").symlink_to(secret)
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "folder").mkdir()
    for name in ("outputs_mnist.npy", "fifo", "folder"):
        assert sandbox.copy_regular(tmp_path / name, tmp_path / "copied.npy") is False
    assert not (tmp_path / "copied.npy").exists()
    assert sandbox.copy_regular(secret, tmp_path / "copied.npy", limit=10) is False  # too large
    assert sandbox.copy_regular(secret, tmp_path / "copied.npy") is True
    assert np.array_equal(np.load(tmp_path / "copied.npy"), np.arange(10))


def test_without_bubblewrap_the_run_falls_back_and_says_so(tmp_path, monkeypatch, capfd, means):
    monkeypatch.setattr(sandbox, "_box", None)
    monkeypatch.setattr(sandbox, "_unavailable", None)
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    folder = write_entry(tmp_path / "subs", "plain", weights=template_weights(means))
    np.save(tmp_path / "images_mnist.npy", np.zeros((4, 1, 28, 28), np.uint8))
    outcome = isolation.run_isolated(folder, EntryMetadata(), {"mnist": tmp_path / "images_mnist.npy"},
                                     tmp_path / "out", device="cpu", timeout=60)
    assert outcome.sandboxed is False
    assert outcome.result["status"] == "ok"
    assert "bubblewrap (bwrap) is not installed" in capfd.readouterr().err
    with pytest.raises(RuntimeError, match="not installed"):
        isolation.run_isolated(folder, EntryMetadata(), {"mnist": tmp_path / "images_mnist.npy"},
                               tmp_path / "out2", device="cpu", timeout=60, sandboxed=True)


def test_a_prestarted_sandbox_runs_the_first_entry(box, tmp_path, means):
    """The sandbox started early, without waiting (as harness.evaluate does while the data load), is alive when
    the first entry comes: a thread that spawned bwrap and ended would have taken it down (--die-with-parent)."""
    sandbox.close_shared()
    isolation.prestart()
    folder = write_entry(tmp_path / "subs", "ada", weights=template_weights(means))
    np.save(tmp_path / "images_mnist.npy", np.zeros((4, 1, 28, 28), np.uint8))
    time.sleep(0.5)  # the caller's other work
    outcome = isolation.run_isolated(folder, EntryMetadata(), {"mnist": tmp_path / "images_mnist.npy"},
                                     tmp_path / "out", device="cpu", timeout=60, sandboxed=True)
    assert outcome.sandboxed is True and outcome.result["status"] == "ok", outcome.result
    assert np.load(tmp_path / "out" / "outputs_mnist.npy").shape == (4, 10)
