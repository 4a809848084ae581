"""``python -m harness.export --out DIR --signed-off-by NAME``: the standings as a signed-off record (CSV + JSON).

One row per entry (its latest version submitted by the deadline; a later one as an unranked "late" row),
ranked as on the board (``harness.scoring.standings``: hidden entries left out, disqualified ones unranked with the
organiser's reason), with everything needed to audit the score:
weights, code and content hashes, dataset hashes, preprocessing version, harness, torch and Python versions,
device and sandboxing. Before the reveal the guest columns are left out. The JSON names who signed off and
when, and holds the SHA-256 of the CSV written beside it.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from harness import cli
from harness.common import competition
from harness.errors import HarnessError
from harness.scoring import board
from harness.store import eval_sets
from harness.store.engine import make_engine

COLUMNS = ["rank", "with_leader", "p_vs_leader", "standing", "note", "name", "display_name", "author", "status",
           "error",
           "submitted_at", "submitted_at_overridden", "override_reason", "guest_accuracy",
           "guest_correct", "guest_total", "mnist_accuracy", "mnist_correct", "mnist_total", "params",
           "content_hash", "code_hash", "weights_hash", "mnist_dataset_hash", "guest_dataset_hash",
           "preprocess_version", "harness_version", "torch_version", "python_version", "device", "sandboxed",
           "evaluated_at", "evaluation_id", "memorised", "memo_pairs", "memo_right_only_as_given",
           "memo_right_only_as_copy", "memo_p"]


def named(column: str, rules: competition.Competition | None) -> str:
    """A column as this competition names it: a task's set columns by the sets' kinds ("public_accuracy",
    "secret_dataset_hash"), the warm-up's as they are ("mnist_accuracy", "guest_dataset_hash")."""
    public, secret = (rules or competition.Competition()).set_kinds
    for role, kind in (("mnist_", public + "_"), ("guest_", secret + "_")):
        if column.startswith(role):
            return kind + column[len(role):]
    return column


def columns(rules: competition.Competition | None) -> list[str]:
    return [named(c, rules) for c in COLUMNS]


def standings(engine, rules: competition.Competition, revealed: bool) -> list[dict]:
    """Ranked rows (the version each entry submitted by the deadline, late ones unranked) with their audit trail;
    guest fields only when ``revealed``; the set columns named as the competition names its sets (:func:`named`)."""
    return [{named(k, rules): v for k, v in row.items()} for row in _standings(engine, rules, revealed)]


def _standings(engine, rules: competition.Competition, revealed: bool) -> list[dict]:
    ranked = board.read(engine, rules, is_revealed=revealed)
    public, secret = rules.set_kinds
    sets = eval_sets.current_datasets(engine, revealed=True)  # the guest's preprocessing is named even while sealed
    out = []
    for row in ranked.rows:
        s = ranked.summaries[row.evaluation_id]
        guest = row.guest if revealed else None
        out.append({
            "rank": row.rank, "with_leader": row.with_leader,
            "p_vs_leader": None if row.p_vs_leader is None else round(row.p_vs_leader, 6), "standing": row.standing,
            "note": row.note,
            "name": row.name, "display_name": row.display_name, "author": row.author, "status": row.status,
            "error": row.error, "submitted_at": row.submitted_at,
            "submitted_at_overridden": s.overridden, "override_reason": s.override_reason,
            "guest_accuracy": guest.accuracy if guest else None, "guest_correct": guest.correct if guest else None,
            "guest_total": guest.total if guest else None,
            "mnist_accuracy": row.mnist.accuracy if row.mnist else None,
            "mnist_correct": row.mnist.correct if row.mnist else None,
            "mnist_total": row.mnist.total if row.mnist else None, "params": row.params,
            "content_hash": s.content_hash, "code_hash": s.code_hash, "weights_hash": s.weights_hash,
            "mnist_dataset_hash": sets[public].content_hash if row.mnist and public in sets else None,
            "guest_dataset_hash": sets[secret].content_hash if guest and secret in sets else None,
            "preprocess_version": sets[secret].preprocess_version if row.status == "ok" and secret in sets else None,
            "harness_version": s.harness_version, "torch_version": s.torch_version,
            "python_version": s.python_version, "device": s.device, "sandboxed": s.sandboxed,
            "evaluated_at": row.evaluated_at, "evaluation_id": row.evaluation_id,
            **memorisation_columns(row)})
    return out


def memorisation_columns(row) -> dict:
    """The memorisation check's figures, flat: pairs, right only as given, right only as the copy, p, flagged."""
    memo = row.memorisation_dict() or {}
    return {"memorised": memo.get("flagged"), "memo_pairs": memo.get("pairs"),
            "memo_right_only_as_given": memo.get("right_only_as_given"),
            "memo_right_only_as_copy": memo.get("right_only_as_copy"), "memo_p": memo.get("p")}


def write(rows: list[dict], out: Path, signed_off_by: str, revealed: bool,
          rules: competition.Competition | None = None) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out / "standings.csv", out / "standings.json"
    with open(csv_path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns(rules))
        writer.writeheader()
        writer.writerows(rows)
    record = {"signed_off_by": signed_off_by, "signed_off_at": datetime.now(UTC).isoformat(timespec="seconds"),
              "guest_revealed": revealed, "competition": (rules or competition.Competition()).as_dict(),
              "csv_sha256": hashlib.sha256(csv_path.read_bytes()).hexdigest(),
              "entries": rows}
    json_path.write_text(json.dumps(record, indent=2))
    return csv_path, json_path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=cli.prog("export"), description=__doc__.splitlines()[0])
    cli.add_db_argument(p)
    p.add_argument("--out", type=Path, required=True, help="folder for standings.csv and standings.json")
    competition.add_argument(p)
    p.add_argument("--signed-off-by", required=True, help="the organiser who vouches for these standings")
    args = p.parse_args(argv)
    return cli.run(lambda: export_standings(args))


def export_standings(args: argparse.Namespace) -> int:
    """Write the standings files; a HarnessError ends it with one sentence (see ``main``)."""
    competition.settle(args)
    rules = competition.load(args.config)
    engine = make_engine(args.db)
    revealed = board.revealed(engine, rules)
    rows = standings(engine, rules, revealed)
    if not rows:
        raise HarnessError("the database holds no evaluations yet; run `python -m harness.evaluate` first.")
    csv_path, json_path = write(rows, args.out, args.signed_off_by, revealed, rules)
    sealed = "" if revealed else " (guest results sealed: left out until the reveal)"
    print(f"wrote {csv_path} and {json_path}: {len(rows)} entries{sealed}.")
    return 0


if __name__ == "__main__":
    sys.exit(cli.ended(main))
