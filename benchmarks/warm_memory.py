"""What Draw-a-digit's warm entries hold in memory, and how many fit the dashboard's budget.

Every entry in a submissions folder is loaded warm (one drawing each, through ``harness.isolation.WarmPool`` as the
dashboard runs it), and each one's memory is measured three ways: what its cgroup is charged (what the budget
counts where cgroups work), the unique memory of its processes (USS: what the budget counts without a cgroup), and
the resident memory (RSS, which counts the pages of torch's libraries that every entry shares, so an upper bound).
Then the same entries are asked in turn under the budget (``--budget``, default: competition.toml's
``[dashboard] warm_memory``), and the script says which stayed warm and what they hold.

    python benchmarks/warm_memory.py                                # the committed entries, about 1 min
    python benchmarks/warm_memory.py --submissions submissions --budget "1 GiB"
    python benchmarks/warm_memory.py --submissions build/resnets --timeout 120   # ResNets load for longer
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.common import competition
from harness.entries.discovery import discover
from harness.isolation import WarmPool
from leaderboard.drawing import LIMITS, memory_text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--submissions", default=str(ROOT / "submissions"))
    p.add_argument("--budget", help='the memory budget, e.g. "2 GiB" (default: competition.toml\'s)')
    p.add_argument("--timeout", type=float, default=LIMITS.timeout,
                   help=f"seconds per drawing, loading included (default: the page's {LIMITS.timeout:g})")
    args = p.parse_args(argv)
    budget = competition.byte_size(args.budget) if args.budget else competition.load().warm_memory
    entries = list(discover(Path(args.submissions), skipped=[]).values())
    digit = np.zeros((1, 28, 28), dtype=np.uint8)
    digit[0, 6:22, 13:15] = 255  # a one

    limits = replace(LIMITS, timeout=args.timeout)
    pool = WarmPool(limits, cap=len(entries))
    print(f"{'entry':28} {'cgroup':>10} {'USS':>10} {'RSS':>10}")
    totals = [0, 0, 0]
    try:
        for entry in entries:
            answer = pool.ask(entry, digit)
            warm = pool._entries[entry.name]
            procs = warm._entry_processes()
            uss = sum(p.memory_full_info().uss for p in procs if p.is_running())
            rss = sum(p.memory_info().rss for p in procs if p.is_running())
            charged = warm._cgroup.usage() if warm._cgroup is not None else 0
            for i, n in enumerate((charged, uss, rss)):
                totals[i] += n
            state = "" if answer.status == "ok" else f"  ({answer.error})"
            print(f"{entry.name:28} {memory_text(charged):>10} {memory_text(uss):>10} {memory_text(rss):>10}{state}")
        print(f"{'all ' + str(len(entries)) + ' warm':28} " + " ".join(f"{memory_text(n):>10}" for n in totals))
    finally:
        pool.close()

    pool = WarmPool(limits, cap=len(entries), memory_budget=budget)
    try:
        for entry in entries:
            pool.ask(entry, digit)
        held = pool.memory()
        print(f"\nunder a budget of {memory_text(budget)}: {len(held)} of {len(entries)} stay warm "
              f"({', '.join(held)}), holding {memory_text(sum(held.values()))}; host memory "
              f"{memory_text(psutil.virtual_memory().total)}")
    finally:
        pool.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
