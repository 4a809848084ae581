"""``python -m harness.sheet``: a printable sheet for the guest's digits, and its import from a phone photo or a scan.

    python -m harness.sheet template [--out sheet]          # sheet.pdf + sheet.png (A4, 150 dpi)
    python -m harness.sheet import PHOTO_OR_SCAN [--out mystery_digits]

What the sheet looks like and how a box is judged: ``harness.data.sheet``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from harness import cli
from harness.data.preprocess import ImageProblem
from harness.data.sheet import DEFAULT_OUT, LAYOUT, SheetProblem, box_name, import_sheet, write_template


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog=cli.prog("sheet"),
                                 description="Guest digit sheet: print a template, import a filled one.")
    sub = ap.add_subparsers(dest="command", required=True)
    t = sub.add_parser("template", help="write a printable sheet (PDF and PNG)")
    t.add_argument("--out", type=Path, default=Path("guest_sheet"), help="file stem (default: guest_sheet)")
    i = sub.add_parser("import", help="cut a photo or scan of a filled sheet into labelled digits")
    i.add_argument("photo", type=Path)
    i.add_argument("--out", type=Path, default=DEFAULT_OUT, help="guest folder (default: mystery_digits/)")
    args = ap.parse_args(argv)
    if args.command == "template":
        for p in write_template(args.out):
            print(f"wrote {p}")
        return 0
    try:
        result = import_sheet(args.photo, args.out)
    except (SheetProblem, ImageProblem) as e:
        cli.say_error(e, sys.stdout)
        return 2
    written, name = result.written, args.photo.name
    counts = np.bincount([int(p.parent.name) for p in written], minlength=10) if written else np.zeros(10, int)
    empty = 10 * LAYOUT.columns - len(written) - len(result.faint)
    print(f"{len(written)} digits from {name} into {args.out} "
          f"({', '.join(f'{d}: {c}' for d, c in enumerate(counts))}); {empty} empty boxes skipped; "
          f"check them in {result.contact}")
    if result.faint:
        boxes = ", ".join(box_name(r, c) for r, c in result.faint)
        print(f"error: {len(result.faint)} boxes on {name} hold marks too faint to read ({boxes}), so they were "
              f"not imported; have the guest go over them in dark pen and import a new photo (they are shown "
              f"darkened in {result.contact})")
        return 1
    if not written:
        print(f"error: every box on {name} is empty, so no digits were imported; photograph the sheet once the "
              f"guest has filled it in")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(cli.ended(main))
