"""``python -m harness.check submissions/<entry>``: validate one entry in seconds, before evaluation (the core is
``harness.submit.checking``, which the dashboard's Submit page runs too)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from harness import cli
from harness.errors import HarnessError
from harness.isolation.prediction import limits_hit
from harness.submit.checking import DIAGNOSE_BELOW, CheckFailed, check, diagnose  # noqa: F401  (check.check, as before)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.check", description="Validate one entry folder.")
    p.add_argument("entry", type=Path, help="the entry folder, e.g. submissions/my-cnn")
    p.add_argument("--mnist-dir", help="folder with the MNIST IDX files (default: $MNIST_DIR or data/mnist)")
    cli.add_device_argument(p, default="cpu")
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--verbose", action="store_true",
                   help="on a failure, also print what the entry's process printed (e.g. every mismatched weight key)")
    args = p.parse_args(argv)
    try:
        return report(check(args.entry, args.mnist_dir, args.device, args.timeout))
    except HarnessError as exc:
        cli.say_error(exc, sys.stdout)
        if "time limit" in limits_hit(str(exc)):
            print(f"  time limit: raise it with `python -m harness.check {args.entry} --timeout {2 * args.timeout:g}` "
                  f"(now {args.timeout:g} s)")
        if getattr(exc, "hint", None):
            print(f"  {exc.hint}")
        if args.verbose and getattr(exc, "log", ""):
            print(f"  the entry's process printed:\n{exc.log.rstrip()}")
        return 1


def report(r: dict) -> int:
    """Print what ``check`` found about a working entry."""
    console = Console(highlight=False, soft_wrap=True)
    console.print(f"[green]✓[/green] {r['entry']} ({escape(r['display_name'])}) loads and runs: output [N, 10] "
                  f"{r['output_kind']}, finite, any batch size.")
    params = "unreadable" if r["params"] is None else f"{r['params']:,}"
    speed = "—" if r["images_per_second"] is None else f"{r['images_per_second']:,.0f}"
    console.print(f"  parameters: {params}   weights: {r['weights_bytes'] / 1e6:.2f} MB   "
                  f"load: {r['load_seconds']:.2f} s   speed: {speed} images/s on {r['sample']} "
                  f"({r['device']})")
    if r["accuracy"] is not None:
        console.print(f"  accuracy on {r['sample']}: {100 * r['accuracy']:.1f}%")
        if r["diagnosis"]:
            console.print(f"  [yellow]diagnosis:[/yellow] {escape(r['diagnosis'])}")  # it may say [constructor]
        elif r["accuracy"] < DIAGNOSE_BELOW:
            console.print(f"  [yellow]warning:[/yellow] under {100 * DIAGNOSE_BELOW:.0f}% and none of the usual input "
                          "conventions (normalisation, polarity, 0-255, size) does better; see 'Input' in "
                          "submissions/README.md.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
