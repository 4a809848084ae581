"""The warm pool's memory budget when answers end together (``WarmPool._fit``): each excess shuts down one least
recently used entry, not one per answer. Stand-in warm entries, so that the two fittings overlap every time."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from types import SimpleNamespace

from harness.isolation import Limits, WarmPool


class StandIn:
    """What ``_fit`` uses of a warm entry: its name, lock, liveness, measured bytes, and a shutdown that takes a
    while (a real one waits for the process to end)."""

    def __init__(self, name: str, size: int, measured: threading.Barrier | None = None):
        self.entry = SimpleNamespace(name=name, content_hash=name)
        self.lock = threading.Lock()
        self.alive = True
        self.size, self.measured = size, measured

    def memory(self) -> int:
        if self.measured is not None:
            self.measured.wait(timeout=10)  # both answers measured before either fits
        return self.size

    def close(self) -> None:
        time.sleep(0.3)
        self.alive = False


def test_two_answers_ending_together_shut_down_one_entry_for_one_excess():
    pool = WarmPool(Limits(device="cpu"), cap=8, memory_budget=1000, sandboxed=False)
    try:
        together = threading.Barrier(2)
        standins = [StandIn("a", 400), StandIn("b", 400), StandIn("c", 300, together), StandIn("d", 300, together)]
        pool._entries = OrderedDict((s.entry.name, s) for s in standins)  # least recently used first
        pool._memory = {"a": 400, "b": 400}
        threads = [threading.Thread(target=pool._fit, args=(s,)) for s in standins[2:]]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=20)
        # a + b + c + d = 1,400 bytes against 1,000: shutting a down leaves 1,000, which fits; b stays warm
        assert [s.alive for s in standins] == [False, True, True, True]
        assert pool.warm() == ["b", "c", "d"]
        assert pool.memory() == {"b": 400, "c": 300, "d": 300}
    finally:
        pool._entries = OrderedDict()
        pool.close()
