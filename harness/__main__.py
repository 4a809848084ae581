"""The ``harness`` command: ``harness <command> [flags]`` (and ``python -m harness <command> [flags]``) runs
``python -m harness.<command> [flags]``, the same flags and exit status. A command's module is imported only when
it is asked for, so ``harness --help`` answers at once. The commands themselves: docs/organiser.md, "Commands in full".
"""

from __future__ import annotations

import difflib
import importlib
import sys

# Every command module (the commands layer in pyproject.toml), with what it does in one line.
COMMANDS = {
    "evaluate": "score every new or changed entry and print the ranking (--watch: keep scoring new versions)",
    "check": "validate one entry folder in seconds and estimate its full evaluation's time",
    "verify": "re-run the stored evaluations on the same images and report any prediction that differs",
    "export": "write the signed-off standings as CSV and JSON",
    "versions": "an entry's versions, the organiser's time overrides, and pruning old versions' files",
    "train": "train a model with the club's knobs and write a ready entry folder",
    "migrate": "bring a results database to the newest schema (or draft a revision)",
    "preview": "contact sheets of what the models see of the guest's digits",
    "sheet": "a printable sheet for the guest's digits, and its import from a photo or scan",
    "insights": "what worked: accuracy by optimizer, epochs, augmentation, architecture and model size",
}
UNKNOWN = 2  # exit status for a command that does not exist, as argparse gives for a bad argument


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: harness <command> [flags]   (or: python -m harness.<command> [flags])", "",
             "Runs a command of the MNIST club's harness; `harness <command> --help` lists its flags.", "",
             "commands:"]
    lines += [f"  {name:<{width}}  {summary}" for name, summary in COMMANDS.items()]
    return "\n".join(lines)


def unknown(name: str) -> str:
    """One sentence for a command that does not exist, naming the closest one and all of them."""
    close = difflib.get_close_matches(name, COMMANDS, n=1)
    hint = f"did you mean `{close[0]}`? " if close else ""
    return f"there is no command {name!r}; {hint}the commands are {', '.join(COMMANDS)} (`harness --help`)."


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``argv`` (``sys.argv[1:]`` by default) to ``harness.<command>.main``; returns its exit status (quietly
    141 when the output's reader went away: ``harness --help | head``)."""
    from harness import cli
    args = sys.argv[1:] if argv is None else list(argv)
    return cli.ended(lambda: _dispatch(args))


def _dispatch(args: list[str]) -> int:
    if not args:
        print(usage(), file=sys.stderr)
        return UNKNOWN
    name, rest = args[0], args[1:]
    if name in ("-h", "--help", "help"):
        print(usage())
        return 0
    if name == "--version":
        from harness import __version__
        print(f"harness {__version__}")
        return 0
    if name not in COMMANDS:
        from harness import cli
        from harness.errors import HarnessError
        cli.say_error(HarnessError(unknown(name)))
        return UNKNOWN
    return importlib.import_module(f"harness.{name}").main(rest)


if __name__ == "__main__":
    sys.exit(main())
