"""``python -m harness.check submissions/<entry>``: validate one entry in seconds (``--competition DIR``: for that
competition's task, on pictures of its public set) (a slow one within about a minute,
on fewer images), before evaluation, and estimate how long its full evaluation would take (the core is
``harness.submit.checking``, which the dashboard's Submit page runs too)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from harness import cli
from harness.common import competition
from harness.data.task import task_of
from harness.errors import HarnessError
from harness.isolation.prediction import limits_hit
from harness.isolation.process import duration
from harness.submit.checking import (
    BUDGET_SECONDS,
    CHECK_TIMEOUT,
    DIAGNOSE_BELOW,
    SAMPLE,
    check,
    diagnose,  # noqa: F401  (check.diagnose, as before)
)

MNIST_TEST = 10_000  # images in MNIST's test set, the public set of a full evaluation


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=cli.prog("check"), description="Validate one entry folder.")
    p.add_argument("entry", type=Path, help="the entry folder, e.g. submissions/my-cnn")
    p.add_argument("--mnist-dir", help="folder with the MNIST IDX files (default: $MNIST_DIR or data/mnist)")
    cli.add_device_argument(p, default="cpu")
    p.add_argument("--timeout", type=float, default=CHECK_TIMEOUT)
    p.add_argument("--budget", type=float, default=BUDGET_SECONDS, metavar="SECONDS",
                   help=f"about how long the check may take on a slow model: a larger budget runs more of the {SAMPLE} "
                        f"images and the input-convention diagnosis (default: {BUDGET_SECONDS:g})")
    p.add_argument("--mystery", type=Path, default=Path("mystery_digits"),
                   help="guest digits folder, counted for the estimate of a full evaluation (default: mystery_digits)")
    competition.add_argument(p)
    p.add_argument("--verbose", action="store_true",
                   help="on a failure, also print what the entry's process printed (e.g. every mismatched weight key)")
    args = p.parse_args(argv)
    return cli.run(lambda: run(args), status=1, stream=sys.stdout,
                   interrupted=f"the check keeps nothing; run `python -m harness.check {args.entry}` again.")


def run(args) -> int:
    try:
        competition.settle(args)
        rules = competition_rules(args.config)
        task = task_of(rules)
        # each of the check's runs: the competition's limits, with the check's own time (--timeout) and --device
        limits = rules.limits(MNIST_TEST, timeout=args.timeout, device=args.device)
        return report(check(args.entry, args.mnist_dir, limits, args.budget, task), estimate(args, rules), args)
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


def guest_count(folder: Path) -> int:
    """How many guest digits an evaluation would run: the image files in ``folder``, else in the shipped sample
    (counted, not read)."""
    from harness.data import guest
    where = Path(folder) if guest.has_guest_files(folder) else guest.sample_guest_dir()
    return sum(f.suffix.lower() in guest.IMAGE_SUFFIXES for f in guest.candidate_files(where))


def set_sizes(args, rules: competition.Competition) -> tuple[int, int, str, str]:
    """How many pictures a full evaluation runs, public and secret, and what they are in words: MNIST's test set and
    the guest's digits (``--mystery``) for the warm-up, else the pictures in the task's two folders (counted, not
    read)."""
    if rules.task is None:
        return MNIST_TEST, guest_count(args.mystery), "MNIST images", "guest digits"
    from harness.data import guest
    def count(folder: Path) -> int:
        return sum(f.suffix.lower() in guest.IMAGE_SUFFIXES for f in guest.candidate_files(folder))
    return (count(rules.task.public.folder), count(rules.task.secret.folder), f"pictures of {rules.task.public.title}",
            f"pictures of {rules.task.secret.title}")


def competition_rules(config: str | None) -> competition.Competition:
    """The competition's rules (``--config``), or its defaults when the file is invalid: the check goes on."""
    try:
        return competition.load(config)
    except HarnessError:
        return competition.parse({})


def estimate(args, rules: competition.Competition | None = None):
    """A function of check's report: the line that says how long a full evaluation of the entry would take here
    (MNIST test, the memorisation copies, the guest digits; two processes, each loaded and warmed up) against the
    competition's time limit (``rules``, else ``--config``'s), or None without a speed."""
    from harness.runner import MEMO_COPIES
    rules = rules or competition_rules(args.config)
    public, secret, public_said, secret_said = set_sizes(args, rules)
    limit = rules.limits(public + secret).timeout
    copies = min(MEMO_COPIES, public)  # distinct public images get a changed copy

    def line(r: dict) -> str | None:
        rate = r.get("estimate_images_per_second") or r["images_per_second"]
        if not rate:
            return None
        seconds = 2 * r["load_seconds"] + (public + copies + secret) / rate
        where = "GPU" if str(r["device"]).startswith("cuda") else "CPU"
        said = (f"a full evaluation takes about {duration(seconds)} on this {where} ({public:,} {public_said} + "
                f"{copies:,} memorisation copies + {secret:,} {secret_said}, and two loads of "
                f"{r['load_seconds']:.1f} s)")
        if seconds <= limit:
            return f"{said}, within its time limit of {duration(limit)}."
        return (f"{said}, over its time limit of {duration(limit)}: raise it with `python -m harness.evaluate "
                f"--timeout {60 * (seconds * 1.5 // 60 + 1):.0f}` or under [limits] in competition.toml, or make the "
                "model faster.")
    return line


def report(r: dict, estimate=None, args=None) -> int:
    """Print what ``check`` found about a working entry (and ``estimate(r)``: the time a full evaluation takes)."""
    console = Console(highlight=False, soft_wrap=True)
    console.print(f"[green]✓[/green] {r['entry']} ({escape(r['display_name'])}) loads and runs: output "
                  f"[N, {r.get('classes', 10)}] {r['output_kind']}, finite, any batch size.")
    params = "unreadable" if r["params"] is None else f"{r['params']:,}"
    speed = "—" if r["images_per_second"] is None else f"{r['images_per_second']:,.0f}"
    console.print(f"  parameters: {params}   weights: {r['weights_bytes'] / 1e6:.2f} MB   "
                  f"load: {r['load_seconds']:.2f} s   speed: {speed} images/s on {r['sample']} "
                  f"({r['device']})")
    if r.get("sample_size", SAMPLE) < SAMPLE and not r.get("whole_set"):
        console.print(f"  a slow model: {r['sample_size']} of the usual {SAMPLE} images, so that the check answers "
                      "in about a minute.")
    said = estimate(r) if estimate is not None else None
    if said:
        console.print(f"  estimate: {escape(said)}")  # "[limits]" is not markup
    if r["accuracy"] is not None:
        console.print(f"  accuracy on {r['sample']}: {100 * r['accuracy']:.1f}%")
        if r.get("diagnosis_skipped"):
            more = r["diagnosis_skipped"]
            again = "" if args is None else (f"; `python -m harness.check {args.entry} --budget "
                                              f"{60 * ((args.budget + more) // 60 + 1):.0f}` tries them")
            console.print(f"  [yellow]diagnosis:[/yellow] not tried: the usual input conventions would take about "
                          f"{duration(more)} more at this speed{escape(again)}.")
        elif r["diagnosis"]:
            console.print(f"  [yellow]diagnosis:[/yellow] {escape(r['diagnosis'])}")  # it may say [constructor]
        elif r["accuracy"] < DIAGNOSE_BELOW:
            console.print(f"  [yellow]warning:[/yellow] under {100 * DIAGNOSE_BELOW:.0f}% and none of the usual input "
                          "conventions (normalisation, polarity, 0-255, size) does better; see 'Input' in "
                          "submissions/README.md.")
    return 0


if __name__ == "__main__":
    sys.exit(cli.ended(main))
