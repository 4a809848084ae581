"""The dashboard's browser tests, several times in a row, with every core kept busy by a spinner process:
``python scripts/browser_under_load.py [--times 5] [pytest arguments…]``; exits non-zero at the first failing run."""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def spin() -> None:
    while True:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--times", type=int, default=5, help="runs in a row (default 5)")
    args, pytest_args = parser.parse_known_args()
    spinners = [multiprocessing.Process(target=spin, daemon=True) for _ in range(os.cpu_count() or 1)]
    for p in spinners:
        p.start()
    try:
        for run in range(1, args.times + 1):
            started = time.monotonic()
            which = pytest_args or ["-m", "browser"]  # every test that drives Chromium (the marker)
            code = subprocess.call([sys.executable, "-m", "pytest", "-q", *which], cwd=REPO)
            print(f"run {run} of {args.times}: {'passed' if code == 0 else f'failed (exit {code})'} in "
                  f"{time.monotonic() - started:.0f} s", flush=True)
            if code:
                return code
        return 0
    finally:
        for p in spinners:
            p.terminate()


if __name__ == "__main__":
    sys.exit(main())
