"""Hostile entries against what is ranked: the parameter count and the speed are the host's measurements, and an
entry without the sandbox still meets its limits (processes, file size, leftovers) and cannot stop the run.

Each cheat is written as a member would: a few lines in ``model.py``. The honest figures come from an independent
reference: the parameter count from the weights tensor itself, the speed from a sleep the entry cannot skip.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import textwrap
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import psutil
import pytest

from harness import runner
from harness.contract import EntryMetadata
from harness.isolation import cgroups, process as isolation, sandbox, users
from harness.isolation.inside import sandbox_server
from harness.store.schema import unpack
from tests.entries import TEMPLATE_CODE, before_return, template_predictions, template_weights, write_entry
from tests.harness.entries.test_contract import evaluate, predicted

pytestmark = pytest.mark.sandbox

SLEEP = 0.4  # seconds each forward call of a slow cheat sleeps: a floor under any honest time

# Every clock the worker (or anything) could read stands still, except for a nanosecond per call.
FREEZES_CLOCKS = TEMPLATE_CODE.replace("import torch\n", textwrap.dedent("""
    import itertools, time
    import torch
    _sleep = time.sleep
    _ticks = itertools.count()
    for _name in ("perf_counter", "monotonic", "time", "process_time"):
        setattr(time, _name, lambda: next(_ticks) * 1e-9)
    for _name in ("perf_counter_ns", "monotonic_ns", "time_ns"):
        setattr(time, _name, lambda: next(_ticks))
"""), 1).replace("return self.scale", f"_sleep({SLEEP})\n        return self.scale")

# parameters() yields nothing; state_dict and the weights stay as they are.
HIDES_PARAMETERS = TEMPLATE_CODE.replace(
    "    def forward(self, x):",
    "    def parameters(self, recurse=True):\n        return iter(())\n\n    def forward(self, x):")

# Rewrites whatever the worker reports: one parameter and a near-zero time for any number of images.
WRAPS_REPORTING = TEMPLATE_CODE.replace("import torch\n", textwrap.dedent("""
    import time
    import torch
    import harness.isolation.inside.worker as _worker
    _write = _worker.write_result
    def _forged(out_dir, result):
        result = dict(result, params=1, seconds={"mnist": 1e-9, "guest": 1e-9}, counts={"mnist": 10**9},
                      images_per_second=5e12)
        _write(out_dir, result)
    _worker.write_result = _forged
"""), 1).replace("return self.scale", f"time.sleep({SLEEP})\n        return self.scale")

# Reads its images before the clock could start: at import, from where they will be.
PEEKS_EARLY = TEMPLATE_CODE.replace("import torch\n", textwrap.dedent("""
    import os
    import torch
    for _folder in ("/in", os.getcwd()):
        try:
            print("early look", _folder, sorted(n for n in os.listdir(_folder) if n.startswith("images_")))
        except OSError as exc:
            print("early look", _folder, type(exc).__name__)
"""), 1)


@contextmanager
def isolation_mode(mode: str):
    """Entries run in the root or the user layout of the sandbox, or as plain processes (no bubblewrap)."""
    with pytest.MonkeyPatch.context() as mp:
        if mode == "plain":
            mp.setattr(sandbox, "_box", None)
            mp.setattr(sandbox, "_unavailable", "the test runs entries without the sandbox")
            yield
            return
        reason = sandbox.unavailable_reason()
        if reason:
            pytest.skip(f"bubblewrap sandbox unavailable here: {reason}")
        as_root = mode == "sandbox, root layout"
        if as_root and os.getuid() != 0:
            pytest.skip("the tests run as a user: the root layout cannot be started")
        if as_root == (os.getuid() == 0):
            yield
            return
        sandbox.close_shared()
        mp.setattr(sandbox, "_box", sandbox.Sandbox([], as_root=False))
        try:
            yield
        finally:
            sandbox.close_shared()


@pytest.fixture(scope="module")
def honest_alone(tmp_path_factory, small_mnist, means):
    """The honest entry evaluated on its own: its stored bytes are what a hostile neighbour must not change."""
    tmp = tmp_path_factory.mktemp("alone")
    write_entry(tmp / "subs", "honest", weights=template_weights(means))
    return evaluate(tmp, [small_mnist], runner.Options(runner.Limits(device="cpu", timeout=120)))["honest"]


@pytest.fixture(scope="module", params=["sandbox, root layout", "sandbox, user layout", "plain"])
def cheats(request, tmp_path_factory, small_mnist, means):
    """The cheats and an honest entry evaluated in one run, in each isolation mode."""
    tmp = tmp_path_factory.mktemp("cheats")
    subs = tmp / "subs"
    weights = template_weights(means)
    write_entry(subs, "honest", weights=weights)
    write_entry(subs, "freezes-clocks", code=FREEZES_CLOCKS, weights=weights)
    write_entry(subs, "hides-parameters", code=HIDES_PARAMETERS, weights=weights)
    write_entry(subs, "wraps-reporting", code=WRAPS_REPORTING, weights=weights)
    write_entry(subs, "peeks-early", code=PEEKS_EARLY, weights=weights)
    with isolation_mode(request.param):
        evaluations = evaluate(tmp, [small_mnist], runner.Options(runner.Limits(device="cpu", timeout=120)))
    assert all(ev.sandboxed == (request.param != "plain") for ev in evaluations.values())
    return evaluations


def weights_values(means) -> int:
    """The independent reference for the template's parameter count: the values in its one weight tensor."""
    return int(np.prod(template_weights(means)["fc.weight"].shape))


def test_parameter_count_is_read_from_the_weights(cheats, means):
    assert weights_values(means) == 7840
    for name in ("honest", "hides-parameters", "wraps-reporting", "freezes-clocks"):
        assert cheats[name].status == "ok", cheats[name].error
        assert cheats[name].params == weights_values(means), name


def test_speed_is_timed_outside_the_entry(cheats, small_mnist):
    """A cheat that sleeps SLEEP seconds per forward call cannot be faster than the images over that sleep, whatever
    it does to the clocks or to the worker's report; the stored figure is a real measurement, not None."""
    # The images handed over: the set and the memorisation check's changed copies of (up to 1,000 of) its digits.
    handed = len(small_mnist.labels) + min(runner.MEMO_COPIES, len(small_mnist.labels))
    batches = -(-handed // 128)  # forward calls: even batches of at most 128 images
    floor = batches * SLEEP
    for name in ("freezes-clocks", "wraps-reporting"):
        ev = cheats[name]
        assert ev.images_per_second is not None, name
        assert ev.images_per_second <= handed / floor, (name, ev.images_per_second)
        assert ev.seconds >= floor
    assert cheats["honest"].images_per_second > 0


def test_predictions_of_cheats_and_honest_entry_are_exact(cheats, small_mnist, means, honest_alone):
    expected = template_predictions(small_mnist.images, means)
    for name, ev in cheats.items():
        assert np.array_equal(predicted(ev), expected), name
    beside, alone = cheats["honest"].results[0], honest_alone.results[0]
    assert beside.predicted == alone.predicted  # byte for byte
    # Each call draws its own secret order, so an image meets other batch-mates and float sums may differ in the last
    # bits: the stored float16 probabilities agree to their resolution, not always bit for bit.
    for blob in ("probabilities", "confidence"):
        np.testing.assert_allclose(unpack(getattr(beside, blob)).astype(np.float32),
                                   unpack(getattr(alone, blob)).astype(np.float32), atol=1e-3)


def test_images_are_not_there_before_the_clock_starts(cheats):
    ev = cheats["peeks-early"]
    assert ev.status == "ok", ev.error
    looks = [line for line in (ev.log or "").splitlines() if line.startswith("early look")]
    assert looks, ev.log
    if ev.sandboxed:  # outside the sandbox the harness's own temp folder is readable: a missing protection
        for line in looks:  # an empty listing, or a folder it cannot list: never an image file
            assert "images_" not in line, line



# --- Without the sandbox -------------------------------------------------------------------------------------

@pytest.fixture()
def plain(tmp_path):
    """Runs one entry without the sandbox (as where bubblewrap is missing) on 4 zero images."""
    images = tmp_path / "images_mnist.npy"
    np.save(images, np.zeros((4, 1, 28, 28), np.uint8))

    def run(folder, timeout=60.0, **kwargs):
        return isolation.run_isolated(folder, EntryMetadata(), {"mnist": images}, tmp_path / f"out-{folder.name}",
                                      device="cpu", timeout=timeout, sandboxed=False, **kwargs)
    return run


def leaves_daemon(pid_file: Path) -> str:
    """Forward code that leaves a double-forked daemon in a session of its own, which writes its pid to a file."""
    return before_return(textwrap.dedent(f"""
        import os, sys, time
        if not getattr(sys, "_daemon_started", False):
            sys._daemon_started = True
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    open({str(pid_file)!r}, "w").write(str(os.getpid()))
                    time.sleep(600)
                    os._exit(0)
                os._exit(0)
            while not os.path.exists({str(pid_file)!r}):
                time.sleep(0.01)
    """))


# Bounded for safety, should the limit fail: at most 3000 sleeping children.
FORK_BOMB = before_return(textwrap.dedent("""
    import os, time
    for _ in range(3000):
        if os.fork() == 0:
            time.sleep(120)
            os._exit(0)
"""))


def writes_big_file(target: Path) -> str:
    return before_return(f"open({str(target)!r}, 'wb').write(b'x' * (64 * 1024 * 1024))")


PRINTS_A_LOT = before_return("for _ in range(20_000):\n    print('x' * 1000)")
KILLS_PARENT = before_return("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)")


def test_unsandboxed_root_entry_runs_as_a_uid_of_its_own_with_limits(plain, tmp_path, means):
    if os.getuid() != 0:
        pytest.skip("the harness runs as a user: entries keep that user's identity")
    folder = write_entry(tmp_path / "subs", "who", weights=template_weights(means), code=before_return(
        "import os, resource\nprint('uid', os.getuid(), 'nproc', resource.getrlimit(resource.RLIMIT_NPROC)[0], "
        "'fsize', resource.getrlimit(resource.RLIMIT_FSIZE)[0])\n"
        "try:\n    open('/root/harness-pwned', 'w')\nexcept OSError as exc:\n    print('write refused', exc.errno)"))
    outcome = plain(folder)
    assert outcome.result["status"] == "ok", (outcome.result, outcome.log)
    uid = int(outcome.log.split("uid ")[1].split()[0])
    assert uid >= users.FIRST_UID and uid != sandbox_server.NOBODY
    nproc = int(outcome.log.split("nproc ")[1].split()[0])
    assert nproc == sandbox.TASK_HEADROOM  # nothing else ran as its uid
    assert f"fsize {sandbox_server.FILE_LIMIT}" in outcome.log
    assert "write refused" in outcome.log and not os.path.exists("/root/harness-pwned")
    assert outcome.sandboxed is False and any("labels" in p for p in outcome.protections)


def test_unsandboxed_daemon_does_not_outlive_its_entry(plain, tmp_path, means):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)  # where the entry (uid nobody under root) writes the daemon's pid
    pid_file = shared / "daemon.pid"
    folder = write_entry(tmp_path / "subs", "daemon", weights=template_weights(means), code=leaves_daemon(pid_file))
    outcome = plain(folder)
    assert outcome.result["status"] == "ok", (outcome.result, outcome.log)
    pid = int(pid_file.read_text())
    try:
        daemon = psutil.Process(pid)
        assert daemon.ppid() != 1, "the daemon escaped to init"
        daemon.wait(timeout=5)  # killed at the entry's end: gone, or reaped within moments
    except psutil.NoSuchProcess:
        pass


def test_unsandboxed_fork_bomb_meets_the_process_limit(plain, tmp_path, means):
    folder = write_entry(tmp_path / "subs", "bomb", weights=template_weights(means), code=FORK_BOMB)
    outcome = plain(folder, timeout=60)
    assert outcome.result["status"] == "failed"
    assert "process limit" in outcome.result["error"], outcome.result
    assert outcome.seconds < 60
    assert not [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] and
                "harness-test-bomb" in " ".join(p.info["cmdline"])]


def test_unsandboxed_file_size_limit_applies(plain, tmp_path, means, monkeypatch):
    monkeypatch.setattr(sandbox_server, "FILE_LIMIT", 16 * 1024 * 1024)
    shared = tmp_path / "shared"
    shared.mkdir()
    # writable by the entry (uid nobody under root); a fresh path, so no stale file is in the way
    os.chmod(shared, 0o777)
    target = shared / "big-output"
    folder = write_entry(tmp_path / "subs", "big-file", weights=template_weights(means), code=writes_big_file(target))
    outcome = plain(folder)
    assert outcome.result["status"] == "failed"
    assert "File too large" in outcome.result["error"], outcome.result
    assert os.path.getsize(target) <= 16 * 1024 * 1024


@pytest.mark.parametrize("sandboxed", [False, True])
def test_printing_a_lot_is_cut_with_a_sentence_not_a_failure(plain, tmp_path, means, sandboxed):
    if sandboxed and sandbox.unavailable_reason():
        pytest.skip(f"bubblewrap sandbox unavailable here: {sandbox.unavailable_reason()}")
    folder = write_entry(tmp_path / "subs", "chatty", weights=template_weights(means), code=PRINTS_A_LOT)
    images = tmp_path / "images_mnist.npy"
    outcome = isolation.run_isolated(folder, EntryMetadata(), {"mnist": images}, tmp_path / "out", device="cpu",
                                     timeout=60, sandboxed=sandboxed)
    assert outcome.result["status"] == "ok", outcome.result
    assert "bytes of output cut" in outcome.log
    assert outcome.log.startswith("x" * 1000) and outcome.log.rstrip().endswith("x" * 1000)
    assert len(outcome.log) < 25_000


def test_an_entry_that_kills_its_parent_stops_only_itself(plain, tmp_path, means, monkeypatch):
    """Under a user's harness (no drop to nobody) the entry can kill the fork server; the next entry still runs."""
    monkeypatch.setattr(isolation, "entry_user", lambda: None)
    killer = write_entry(tmp_path / "subs", "killer", weights=template_weights(means), code=KILLS_PARENT)
    good = write_entry(tmp_path / "subs", "good", weights=template_weights(means))
    plain(good)
    server = isolation._forkserver()
    assert server is not None
    plain(killer)  # it may even finish: its own process outlives the fork server
    assert not server.is_running() or server.status() == psutil.STATUS_ZOMBIE  # the cheat did kill it
    second = plain(good)
    assert second.result["status"] == "ok", second.result
    assert isolation._forkserver().pid != server.pid


def test_an_entrys_words_are_not_markup_in_the_terminal_table():
    """Names, authors and errors come from the entry (entry.toml, its exceptions): the table prints them as they are,
    so brackets can neither hide text nor restyle a row."""
    import io

    from rich.console import Console

    from harness.scoring import ranking, report
    from harness.store.evaluations import Score
    forged = "[white on white]1[/white on white] [bold]winner"
    ok = ranking.Row(name="x", display_name=forged, author="[red]ada[/red]", status="ok", error=None,
                     mnist=Score(0, 0, 9, 10, 0.9, 0.5, 0.99), guest=None, params=1, images_per_second=1.0,
                     weights_bytes=1, content_hash="h" * 12, evaluated_at="", evaluation_id=1, rank=1)
    bad = ranking.Row(name="y", display_name="y", author=None, status="failed", error="boom [/red][green]fine",
                      mnist=None, guest=None, params=None, images_per_second=None, weights_bytes=1,
                      content_hash="h" * 12, evaluated_at="", evaluation_id=2)
    out = io.StringIO()
    report.print_table(Console(file=out, width=300), [ok, bad], False, ["note with [brackets] kept"])
    text = out.getvalue()
    assert forged in text and "[red]ada[/red]" in text and "boom [/red][green]fine" in text
    assert "note with [brackets] kept" in text


# --- Limits every mode must hold: memory that no process shows, signals, scratch left for the next entry -------

# Three memfd files of 960 MiB each, kept open: pages that belong to no process's resident memory.
HOARDS_MEMFD = before_return(textwrap.dedent("""
    import os, sys
    if not hasattr(sys, "_memfds"):
        sys._memfds = []
        chunk = b"x" * (16 * 1024 * 1024)
        for i in range(3):
            fd = os.memfd_create(f"hoard-{i}")
            sys._memfds.append(fd)
            for _ in range(60):
                os.write(fd, chunk)
            print("hoarded", (i + 1) * 960, "MiB", flush=True)
"""))

MODES = ["sandbox, root layout", "sandbox, user layout", "plain"]


def run_in(mode: str, folder: Path, tmp_path: Path, **kwargs) -> isolation.RunOutcome:
    """One entry run in ``mode`` (see isolation_mode) on 4 zero images."""
    images = tmp_path / "images_mnist.npy"
    np.save(images, np.zeros((4, 1, 28, 28), np.uint8))
    with isolation_mode(mode):
        return isolation.run_isolated(folder, EntryMetadata(), {"mnist": images}, tmp_path / f"out-{folder.name}",
                                      device="cpu", sandboxed=mode != "plain", **kwargs)


@pytest.mark.parametrize("mode", MODES)
def test_memory_held_in_memfd_files_meets_the_memory_limit(mode, tmp_path, means):
    try:
        cgroups.create(0).remove()
    except cgroups.Unavailable as exc:
        pytest.skip(f"no cgroup here ({exc}): the limit counts resident memory only, and results say so")
    folder = write_entry(tmp_path / "subs", "memfd", weights=template_weights(means), code=HOARDS_MEMFD)
    outcome = run_in(mode, folder, tmp_path, timeout=120, memory_limit=1024 ** 3)
    assert outcome.result["status"] == "failed", (outcome.result, outcome.log)
    assert outcome.result["error"].startswith("used more than its memory limit of 1.0 GiB and was stopped"), \
        outcome.result
    assert "\n" not in outcome.result["error"].strip()
    assert "hoarded 1920 MiB" not in outcome.log  # stopped at the limit, not after
    assert 0 < outcome.peak_rss <= 1024 ** 3  # the cgroup's peak: every page, and never more than the limit
    assert not any("memfd" in p for p in outcome.protections)


def test_without_a_cgroup_the_memory_limit_says_what_it_cannot_see(plain, tmp_path, means, monkeypatch):
    def refuse(*args, **kwargs):
        raise cgroups.Unavailable("the test refuses cgroups")
    monkeypatch.setattr(cgroups, "create", refuse)
    folder = write_entry(tmp_path / "subs", "plain", weights=template_weights(means))
    outcome = plain(folder)
    assert outcome.result["status"] == "ok", outcome.result
    assert any("memfd" in p and "the test refuses cgroups" in p for p in outcome.protections), outcome.protections


def kills(pids: list[int]) -> str:
    return before_return(textwrap.dedent(f"""
        import os, signal
        for pid in {pids!r}:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError as exc:
                print("refused", pid, type(exc).__name__)
            else:
                print("killed", pid)
    """))


def test_an_unsandboxed_entry_can_signal_no_process_but_its_own(plain, tmp_path, means):
    if os.getuid() != 0:
        pytest.skip("under a user's harness an unsandboxed entry keeps that user's identity (see the table in "
                    "docs/scoring.md)")
    from harness.entries.discovery import discover
    from harness.isolation import WarmPool
    from harness.isolation.prediction import Limits
    write_entry(tmp_path / "warm", "neighbour", weights=template_weights(means))
    neighbour = discover(tmp_path / "warm", skipped=[])["neighbour"]
    pool = WarmPool(Limits(timeout=60, memory=2 * 1024 ** 3, device="cpu", batch_size=1), sandboxed=False)
    digit = np.zeros((1, 28, 28), np.uint8)
    sleeper = subprocess.Popen(["sleep", "600"], user=sandbox_server.NOBODY, group=sandbox_server.NOBODY)
    try:
        before = pool.ask(neighbour, digit)
        assert before.status == "ok", before.error
        warm_pid = pool._entries["neighbour"].pid
        folder = write_entry(tmp_path / "subs", "killer", weights=template_weights(means),
                             code=kills([warm_pid, sleeper.pid]))
        outcome = plain(folder)
        assert outcome.result["status"] == "ok", (outcome.result, outcome.log)
        assert f"refused {warm_pid} PermissionError" in outcome.log and "killed" not in outcome.log, outcome.log
        assert f"refused {sleeper.pid} PermissionError" in outcome.log
        assert sleeper.poll() is None and psutil.Process(warm_pid).status() != psutil.STATUS_ZOMBIE
        after = pool.ask(neighbour, digit)
        assert after.status == "ok" and pool.starts("neighbour") == 1
        assert np.array_equal(after.outputs["draw"], before.outputs["draw"])
    finally:
        sleeper.kill()
        sleeper.wait()
        pool.close()


# Leaves, in its scratch folder (the sandbox's /tmp; unsandboxed, its own TMPDIR): a tree 1,500 levels deep, a folder
# and a file without any permission, a name that is not UTF-8 and a note; prints what is there when it starts.
LEAVES_HOSTILE_SCRATCH = before_return(textwrap.dedent("""
    import os, sys, tempfile
    top = tempfile.gettempdir()
    if not hasattr(sys, "_left"):  # once, on the first batch
        sys._left = True
        print("found", sorted(n for n in os.listdir(os.fsencode(top)) if n.startswith(b"left-")), flush=True)
        os.mkdir(os.path.join(top, "left-deep"))
        fd = os.open(os.path.join(top, "left-deep"), os.O_RDONLY)
        for _ in range(1500):
            os.mkdir("d", dir_fd=fd)
            inner = os.open("d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = inner
        with open("note", "w", opener=lambda name, flags: os.open(name, flags, 0o600, dir_fd=fd)) as fh:
            fh.write("from the deep")
        os.close(fd)
        os.makedirs(os.path.join(top, "left-locked", "inner"))
        open(os.path.join(top, "left-locked", "inner", "note"), "w").write("locked away")
        os.chmod(os.path.join(top, "left-locked", "inner"), 0)
        os.chmod(os.path.join(top, "left-locked"), 0)
        open(os.path.join(top, "left-note.txt"), "w").write("for the next entry")
        os.chmod(os.path.join(top, "left-note.txt"), 0)
        open(os.path.join(os.fsencode(top), b"left-\\xff\\xfe"), "w").write("odd name")
        print("left", sorted(n for n in os.listdir(os.fsencode(top)) if n.startswith(b"left-")), "in", top, flush=True)
"""))


@pytest.mark.parametrize("mode", MODES)
def test_each_entry_starts_from_an_empty_scratch_folder(mode, tmp_path, means):
    first = write_entry(tmp_path / "subs", "leaves", weights=template_weights(means), code=LEAVES_HOSTILE_SCRATCH)
    second = write_entry(tmp_path / "subs", "finds", weights=template_weights(means), code=LEAVES_HOSTILE_SCRATCH)
    left, found = (run_in(mode, folder, tmp_path, timeout=120) for folder in (first, second))
    assert left.result["status"] == "ok" and found.result["status"] == "ok", (left.result, found.result, left.log)
    assert "found []" in left.log and "left [b'left-deep', b'left-locked', b'left-note.txt', b'left-\\xff\\xfe']" \
        in left.log, left.log
    assert "found []" in found.log, found.log  # the previous entry's leftovers were all gone
    if mode == "plain":  # a scratch folder of its own next to its outputs, gone with the entry
        scratch = left.log.split(" in ")[-1].split()[0]
        assert scratch != tempfile.gettempdir() and not os.path.exists(scratch)
