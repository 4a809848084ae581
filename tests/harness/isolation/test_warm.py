"""Entries kept warm (``harness.isolation.WarmPool``): loaded once, answering like a one-off run, restarted after a
crash or a hang with the failure in one sentence, still under their limits, and unable to see another entry's
images. The dashboard's Draw-a-digit page asks through it."""

from __future__ import annotations

import contextlib
import os
import pwd
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import psutil
import pytest

from harness.entries.discovery import discover
from harness.isolation import Limits, Predictor, WarmPool, cgroups, predict, sandbox, users, warm
from tests.conftest import REPO
from tests.entries import before_return, template_predictions, template_weights, with_forward, write_entry

pytestmark = pytest.mark.sandbox

LIMITS = Limits(timeout=30, memory=2 * 1024 ** 3, device="cpu", batch_size=1)

COUNTING = '''
import os
import tempfile

import torch
from torch import nn

LOG = os.path.join(tempfile.gettempdir(), "loads")  # the sandbox's own /tmp


class Net(nn.Module):
    """Counts its loads in a file and its forward calls on itself; answers [loads, calls, 0, ...]."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(784, 10, bias=False)
        self.calls = 0
        with open(LOG, "a") as fh:
            fh.write("loaded\\n")

    def forward(self, x):
        self.calls += 1
        with open(LOG) as fh:
            loads = fh.read().count("loaded")
        out = torch.zeros(x.shape[0], 10)
        out[:, 0] = loads
        out[:, 1] = self.calls
        return out
'''

SPY = '''
import glob
import os
import time

import torch
from torch import nn


class Net(nn.Module):
    """Looks for other entries' images while they are being read; answers [seen elsewhere, files in /in, 0, ...]."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(784, 10, bias=False)

    def forward(self, x):
        if x.shape[0] == 1 and x.mean() > 0.99:  # the test's request, not the warm-up
            time.sleep(1.5)  # the other entry has its image by now
            seen = []
            for pattern in ("/tmp/harness-*/in/*", "/tmp/harness-*/**/*.npy", "/proc/*/root/in/*",
                            "/proc/*/root/tmp/**/*.npy", "/*/draw-*.npy", "/*/*/draw-*.npy"):
                seen += [p for p in glob.glob(pattern, recursive=True) if not os.path.realpath(p).startswith("/in/")]
            print("seen:", seen, "own:", os.listdir("/in"))
            out = torch.zeros(x.shape[0], 10)
            out[:, 0] = len(seen)
            out[:, 1] = len(os.listdir("/in"))
            return out
        return self.fc(x.flatten(1))
'''

WHITE = np.full((1, 28, 28), 255, np.uint8)  # the trigger for the hostile entries below


@pytest.fixture(scope="module")
def sandboxed():
    reason = sandbox.unavailable_reason()
    if reason or not warm.sandbox_works():
        pytest.skip(f"bubblewrap sandbox unavailable here: {reason}")
    return True


@pytest.fixture()
def pools():
    made = []

    def make(limits: Limits = LIMITS, **kwargs) -> WarmPool:
        made.append(WarmPool(limits, **kwargs))
        return made[-1]

    yield make
    for pool in made:
        pool.close()


def entry(root: Path, name: str, **kwargs):
    write_entry(root, name, **kwargs)
    return discover(root, skipped=[])[name]


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_the_model_is_loaded_once_and_answers_every_request(sandboxed, pools, tmp_path, mnist_test):
    pool = pools()
    counting = entry(tmp_path, "counting", code=COUNTING, weights=template_weights(np.zeros((10, 784))))
    answers = [pool.ask(counting, mnist_test.images[i:i + 1]) for i in range(3)]
    assert [a.status for a in answers] == ["ok"] * 3 and all(a.sandboxed for a in answers)
    loads = [int(a.outputs["draw"][0, 0]) for a in answers]
    calls = [int(a.outputs["draw"][0, 1]) for a in answers]
    assert loads == [1, 1, 1]  # one construction in the process's /tmp, seen by every request
    assert calls[1] == calls[0] + 1 and calls[2] == calls[1] + 1  # the same model object answered each time
    assert pool.starts("counting") == 1 and pool.warm() == ["counting"]


def test_unsandboxed_warm_entry_runs_as_a_uid_of_its_own_and_loads_once(pools, tmp_path, mnist_test, means):
    pool = pools(sandboxed=False)
    dee = entry(tmp_path, "dee", weights=template_weights(means))
    images = mnist_test.images[:5]
    first = pool.ask(dee, images)
    worker = pool._entries["dee"]
    pid = worker.pid
    second = pool.ask(dee, images)
    assert first.status == second.status == "ok" and first.sandboxed is False and first.protections
    assert worker.pid == pid and pool.starts("dee") == 1
    assert np.array_equal(second.outputs["draw"].argmax(1), template_predictions(images, means))
    if os.getuid() == 0:  # a uid of its own, no account's, shared with no other process
        uid = psutil.Process(pid).uids().real
        assert uid >= users.FIRST_UID and uid not in {u.pw_uid for u in pwd.getpwall()}
        assert {p.pid for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real == uid} == {pid}


def test_a_warm_pool_is_a_predictor_answering_each_set_as_the_front_door_does(pools, tmp_path, mnist_test, means):
    """``WarmPool.predict``, the call the run loop makes (``harness.isolation.Predictor``): every set in one request,
    each set's outputs back under its name; never a secret set, and only under the pool's own limits."""
    pool = pools(sandboxed=False)
    dee = entry(tmp_path, "dee", weights=template_weights(means))
    sets = {"a": mnist_test.images[:5], "b": mnist_test.images[5:12]}
    assert isinstance(pool, Predictor) and pool.width == pool.cap and pool.resolve_device("cpu") == "cpu"
    starts_then = []  # the caller's own work (keeping a new version's files) is done first, before the entry starts
    got = pool.predict(dee, sets, LIMITS, while_loading=lambda: starts_then.append(pool.starts("dee")))
    assert got.status == "ok" and list(got.outputs) == ["a", "b"] and pool.starts("dee") == 1 and starts_then == [0]
    for kind, images in sets.items():
        assert np.array_equal(got.outputs[kind].argmax(1), template_predictions(images, means))
    with pytest.raises(ValueError, match="a warm pool never runs a secret set"):
        pool.predict(dee, sets, LIMITS, secret=True)
    with pytest.raises(ValueError, match="this warm pool runs its entries under"):
        pool.predict(dee, sets, replace(LIMITS, timeout=60))


def test_answers_equal_predicts_for_every_committed_entry(sandboxed, pools, mnist_test):
    """The same images through the warm process and through a one-off run give the same outputs."""
    pool = pools()
    entries = list(discover(REPO / "submissions", skipped=[]).values())
    assert len(entries) >= 5
    images = mnist_test.images[:12]
    warm_answers = {e.name: answer for e, answer in pool.ask_all(entries, images)}
    for e in entries:
        reference = predict(e, {"draw": images}, LIMITS)
        got = warm_answers[e.name]
        assert got.status == reference.status == "ok", (e.name, got.error, reference.error)
        assert np.array_equal(got.outputs["draw"].argmax(1), reference.outputs["draw"].argmax(1)), e.name
        np.testing.assert_allclose(got.outputs["draw"], reference.outputs["draw"], rtol=1e-4, atol=1e-4)
        assert (got.outputs["draw"].argmax(1) == mnist_test.labels[:12]).mean() >= 0.9, e.name  # real readings


def test_a_crash_is_one_sentence_and_the_next_request_restarts_it(sandboxed, pools, tmp_path, mnist_test, means):
    pool = pools()
    crashing = entry(tmp_path, "crashing", weights=template_weights(means), code=with_forward('''
        import os, signal
        if x.mean() > 0.99:
            os.kill(os.getpid(), signal.SIGSEGV)
        return self.scale * self.fc(x.flatten(1) - 0.5)'''))
    digit = mnist_test.images[:1]
    assert pool.ask(crashing, digit).status == "ok"
    crashed = pool.ask(crashing, WHITE)
    assert crashed.status == "failed"
    assert crashed.error == "the entry's process was killed by SIGSEGV before it finished."
    assert pool.warm() == []  # killed and cleaned up; nothing is started until someone asks
    again = pool.ask(crashing, digit)
    assert again.status == "ok" and again.outputs["draw"].argmax(1)[0] == template_predictions(digit, means)[0]
    assert pool.starts("crashing") == 2


def test_a_hang_is_stopped_at_the_time_limit_and_restarted(sandboxed, pools, tmp_path, mnist_test, means):
    pool = pools(Limits(timeout=8, memory=2 * 1024 ** 3, device="cpu", batch_size=1))
    hanging = entry(tmp_path, "hanging", weights=template_weights(means), code=with_forward('''
        import time
        if x.mean() > 0.99:
            time.sleep(3600)
        return self.scale * self.fc(x.flatten(1) - 0.5)'''))
    digit = mnist_test.images[:1]
    assert pool.ask(hanging, digit).status == "ok"
    pid = pool._entries["hanging"].pid
    started = time.monotonic()
    hung = pool.ask(hanging, WHITE)
    assert 8 <= time.monotonic() - started < 30
    assert hung.error == ("took longer than its time limit of 8 s and was stopped; make the model faster or raise "
                          "the time limit.")
    assert gone(pid)
    assert pool.ask(hanging, digit).status == "ok" and pool.starts("hanging") == 2


def test_the_memory_limit_still_applies(sandboxed, pools, tmp_path, mnist_test, means):
    pool = pools(Limits(timeout=30, memory=1024 ** 3, device="cpu", batch_size=1))
    greedy = entry(tmp_path, "greedy", weights=template_weights(means), code=with_forward('''
        if x.mean() > 0.99:
            self.hoard = torch.ones(3 * 2 ** 30 // 4)  # 3 GiB
        return self.scale * self.fc(x.flatten(1) - 0.5)'''))
    digit = mnist_test.images[:1]
    assert pool.ask(greedy, digit).status == "ok"
    refused = pool.ask(greedy, WHITE)
    assert refused.status == "failed" and "out of memory" in refused.error and "(model.py line" in refused.error
    assert pool.ask(greedy, digit).status == "ok"  # the refusal left the model loaded
    assert pool.starts("greedy") == 1


def test_a_process_without_a_whole_requests_cpu_time_left_is_started_afresh(sandboxed, pools, tmp_path, mnist_test,
                                                                          means, monkeypatch):
    monkeypatch.setattr(warm, "CPU_REQUESTS", 1)  # the cap is one request's worth: loading uses some of it
    pool = pools()
    dee = entry(tmp_path, "dee", weights=template_weights(means))
    for _ in range(2):
        assert pool.ask(dee, mnist_test.images[:1]).status == "ok"
    assert pool.starts("dee") == 2


def test_an_entry_cannot_see_another_entrys_images(sandboxed, pools, tmp_path):
    pool = pools()
    victim = entry(tmp_path, "victim", weights=template_weights(np.zeros((10, 784))), code=with_forward('''
        import time
        if x.mean() > 0.99:
            time.sleep(4)
        return self.fc(x.flatten(1))'''))
    spy = entry(tmp_path, "spy", code=SPY, weights=template_weights(np.zeros((10, 784))))
    pool.prepare([victim, spy])
    deadline = time.monotonic() + 60
    while sorted(pool.warm()) != ["spy", "victim"] and time.monotonic() < deadline:
        time.sleep(0.1)
    answers, seen_by_host = {}, []
    asking = threading.Thread(target=lambda: answers.update((e.name, a) for e, a in pool.ask_all([victim, spy], WHITE)))
    asking.start()
    folder = pool._entries["victim"]._root / "in"
    while asking.is_alive() and not seen_by_host:
        seen_by_host = list(folder.glob("draw-*.npy"))
        time.sleep(0.05)
    asking.join()
    assert seen_by_host  # the victim's image was there on the host while the spy looked
    read = answers["spy"]
    assert read.status == "ok", read.error
    assert read.outputs["draw"][0, :2].tolist() == [0.0, 1.0]  # nothing elsewhere; in /in only its own image


HOG_MIB = 300
HOG = before_return(f"self.__dict__.setdefault('hog', torch.ones({HOG_MIB} * 2 ** 20 // 4))")
MIB = 2 ** 20


@pytest.mark.parametrize("counted_by", ["cgroup", "uss"])
def test_a_warm_entrys_memory_is_what_its_processes_hold(sandboxed, pools, tmp_path, mnist_test, means, monkeypatch,
                                                          counted_by):
    if counted_by == "uss":  # no cgroup: the unique memory of its processes
        monkeypatch.setattr(cgroups, "create", lambda *a, **k: (_ for _ in ()).throw(cgroups.Unavailable("test")))
    pool = pools()
    small = entry(tmp_path, "small", weights=template_weights(means))
    big = entry(tmp_path, "big", code=HOG, weights=template_weights(means))
    for e in (small, big):
        assert pool.ask(e, mnist_test.images[:1]).status == "ok"
    assert pool.memory() == {}  # no budget: nothing is measured
    used = {name: warm.memory() for name, warm in pool._entries.items()}
    assert (pool._entries["big"]._cgroup is not None) == (counted_by == "cgroup")
    # The one difference between the two is the tensor the big one holds: 300 MiB, within 10%.
    assert 0.9 * HOG_MIB <= (used["big"] - used["small"]) / MIB <= 1.1 * HOG_MIB, used
    assert 50 * MIB < used["small"] < 2048 * MIB, used  # torch and a linear layer


def test_the_memory_budget_keeps_the_most_recently_used_that_fit(sandboxed, pools, tmp_path, mnist_test, means):
    a, b = (entry(tmp_path, name, weights=template_weights(means)) for name in ("a", "b"))
    big = entry(tmp_path, "big", code=HOG, weights=template_weights(means))
    one = mnist_test.images[:1]
    probe = pools()
    assert probe.ask(a, one).status == "ok"
    small = probe._entries["a"].memory()
    probe.close()

    pool = pools(memory_budget=2 * small + 150 * MIB)  # two small ones fit, or the big one (small + 300 MiB) alone
    for e in (a, b):
        assert pool.ask(e, one).status == "ok"
    assert pool.warm() == ["a", "b"] and set(pool.memory()) == {"a", "b"}
    assert pool.ask(big, one).status == "ok"
    assert pool.warm() == ["big"]  # a (least recently used) went, then b: the big one needs the room of both
    assert sum(pool.memory().values()) <= pool.memory_budget
    assert pool.ask(a, one).status == "ok" and pool.warm() == ["a"] and pool.starts("a") == 2  # loaded again

    tight = pools(memory_budget=small + 100 * MIB)  # the big one alone needs more
    assert tight.ask(a, one).status == "ok" and tight.warm() == ["a"]
    answer = tight.ask(big, one)
    assert answer.status == "ok", answer.error  # it answers, and is shut down: never kept over the budget
    assert tight.warm() == [] and tight.memory() == {}
    assert tight.ask(big, one).status == "ok" and tight.starts("big") == 2
    tight.prepare([a])  # preparing skips what cannot fit beside the others; here it fits, and loads
    deadline = time.monotonic() + 60
    while tight.warm() != ["a"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert tight.warm() == ["a"]


def test_cap_idle_shutdown_and_close(sandboxed, pools, tmp_path, mnist_test, means):
    pool = pools(cap=2)
    entries = [entry(tmp_path, name, weights=template_weights(means)) for name in ("a", "b", "c")]
    pids = {}
    for e in entries:
        assert pool.ask(e, mnist_test.images[:1]).status == "ok"
        pids[e.name] = pool._entries[e.name].pid
    assert pool.warm() == ["b", "c"] and gone(pids["a"])  # the least recently used made room
    pool.close()
    assert gone(pids["b"]) and gone(pids["c"])
    with pytest.raises(RuntimeError, match=r"^this warm pool has been closed; make a new one\.$"):
        pool.ask(entries[0], mnist_test.images[:1])

    idle = pools(idle_seconds=1.0)
    assert idle.ask(entries[0], mnist_test.images[:1]).status == "ok"
    pid = idle._entries["a"].pid
    deadline = time.monotonic() + 20
    while (idle.warm() or not gone(pid)) and time.monotonic() < deadline:  # the kill may land after 'not warm'
        time.sleep(0.2)
    assert idle.warm() == [] and gone(pid)  # shut down once idle
    assert idle.ask(entries[0], mnist_test.images[:1]).status == "ok" and idle.starts("a") == 2


HOST = """
import sys, time
import numpy as np
from harness.entries.discovery import discover
from harness.isolation import Limits, WarmPool
entry = discover(__import__("pathlib").Path(sys.argv[1]), skipped=[])["dee"]
pool = WarmPool(Limits(timeout=60, memory=2 * 1024 ** 3, device="cpu", batch_size=1))
assert pool.ask(entry, np.zeros((1, 28, 28), np.uint8)).status == "ok"
print(pool._entries["dee"].pid, flush=True)
if sys.argv[2] == "wait":
    time.sleep(600)
"""


@pytest.mark.parametrize("how", ["exits", "killed"])
def test_warm_entries_end_with_the_host_process(sandboxed, tmp_path, means, how):
    """On a normal exit the pool shuts its entries down; killed with -9, the sandbox dies with its parent."""
    write_entry(tmp_path, "dee", weights=template_weights(means))
    host = subprocess.Popen([sys.executable, "-c", HOST, str(tmp_path), "wait" if how == "killed" else "exit"],
                            cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        pid = int(host.stdout.readline())
        assert not gone(pid)
        if how == "killed":
            host.kill()
        host.wait(60)
        deadline = time.monotonic() + 10
        while not gone(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert gone(pid)
        if how == "exits":  # its folders went with it (after a kill -9, the next harness start removes them)
            assert not list(Path(tempfile.gettempdir()).glob(f"harness-{host.pid}-warm-*"))
    finally:
        host.kill()
        host.wait()


def test_bad_images_and_cap_are_refused_in_one_sentence(pools, tmp_path, means):
    with pytest.raises(ValueError, match=r"^a warm pool needs a cap of at least 1 entry, not 0\.$"):
        WarmPool(LIMITS, cap=0)
    pool = pools(sandboxed=False)
    dee = entry(tmp_path, "dee", weights=template_weights(means))
    with pytest.raises(ValueError, match=r"the images are float32 \[1, 28, 28\]; a warm entry takes uint8"):
        pool.ask(dee, np.zeros((1, 28, 28), np.float32))
    assert pool.starts("dee") == 0  # refused before anything started


SPINS_BETWEEN = '''
import threading

import torch
from torch import nn


def _spin():
    while True:
        pass


threading.Thread(target=_spin, daemon=True).start()  # spins from the import until the process ends


class Net(nn.Module):
    def __init__(self, scale: float = 0.05):
        super().__init__()
        self.fc = nn.Linear(784, 10, bias=False)
        self.scale = scale

    def forward(self, x):
        return self.scale * self.fc(x.flatten(1) - 0.5)
'''


def cpu_seconds(warm_entry: warm.WarmEntry) -> float:
    """CPU time used so far by the processes that run the warm entry's code."""
    total = 0.0
    for p in warm_entry._entry_processes():
        with contextlib.suppress(psutil.Error):
            total += sum(p.cpu_times()[:2])
    return total


@pytest.mark.parametrize("mode", ["sandboxed", "plain"])
def test_a_warm_entry_gets_no_cpu_between_requests(mode, pools, tmp_path, mnist_test, means):
    if mode == "sandboxed" and (sandbox.unavailable_reason() or not warm.sandbox_works()):
        pytest.skip("bubblewrap sandbox unavailable here")
    pool = pools(sandboxed=mode == "sandboxed")
    spinner = entry(tmp_path, "spinner", code=SPINS_BETWEEN, weights=template_weights(means))
    neighbour = entry(tmp_path, "neighbour", weights=template_weights(means))
    images = mnist_test.images[:3]
    expected = template_predictions(images, means)
    before = pool.ask(neighbour, images)
    assert before.status == "ok", before.error
    assert pool.ask(spinner, images).status == "ok"
    spinning = pool._entries["spinner"]
    used = cpu_seconds(spinning)
    time.sleep(1.0)  # idle: a running daemon thread would use about this much
    assert cpu_seconds(spinning) - used < 0.2
    again = pool.ask(spinner, images)
    assert again.status == "ok" and np.array_equal(again.outputs["draw"].argmax(1), expected)
    after = pool.ask(neighbour, images)
    assert after.status == "ok" and np.array_equal(after.outputs["draw"], before.outputs["draw"])
    assert pool.starts("spinner") == 1 and pool.starts("neighbour") == 1
