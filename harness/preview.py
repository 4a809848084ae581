"""Contact sheets of "what the model sees": every guest digit after normalisation, with its label.

    python -m harness.preview                          # mystery_digits/ (else the sample) → mystery_digits/_preview/
    python -m harness.preview photos/ --out previews/

Writes ``overview.png`` (the normalised digits, a row per label), ``pairs-<n>.png`` (each picture
as given beside what the model sees, with its file name) and ``skipped.txt``. The dashboard shows
the same images via :func:`contact_sheet`. Previews reveal the guest set: keep them out of git
(``mystery_digits/_preview/`` already is).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness import cli
from harness.data.contact_sheet import DEFAULT_FOLDER, write_previews
from harness.data.guest import GuestSetError, load_guest_set, resolve_guest_set


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog=cli.prog("preview"),
                                 description="Write 'what the model sees' contact sheets.")
    ap.add_argument("folder", nargs="?", type=Path,
                    help="guest folder (default: mystery_digits/, else the shipped sample)")
    ap.add_argument("--out", type=Path, help="where to write (default: mystery_digits/_preview/)")
    args = ap.parse_args(argv)
    try:
        guest = load_guest_set(args.folder) if args.folder else resolve_guest_set(DEFAULT_FOLDER)
    except GuestSetError as e:
        cli.say_error(e)
        return 2
    if args.folder:
        folder = args.folder
    else:
        from harness.data.guest import sample_guest_dir
        folder = sample_guest_dir() if guest.source == "sample" else DEFAULT_FOLDER
    out = args.out or DEFAULT_FOLDER / "_preview"
    paths = write_previews(guest, folder, out)
    print(f"{len(guest)} digits ({guest.source}) from {folder}, {len(guest.skipped)} skipped; wrote {len(paths)} files "
          f"to {out}")
    for f, why in guest.skipped:
        print(f"  skipped {f}: {why}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.ended(main))
