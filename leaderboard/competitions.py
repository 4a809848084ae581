"""Which competitions one dashboard serves, which one a visitor looks at, and whether it is an archive (no Streamlit
here).

A deployment names its competition folders with ``--competition DIR`` (as often as needed, after ``--`` on
``streamlit run leaderboard/app.py -- ...``) and/or ``$LEADERBOARD_COMPETITIONS`` (folders separated by
``os.pathsep``); ``$LEADERBOARD_COMPETITION`` names the one it opens on (the first listed otherwise). Each folder
holds its ``competition.toml`` and its own ``leaderboard.db``. Naming none serves the repository root's
competition.toml and ``$LEADERBOARD_DB`` as before.

A competition whose deadline has passed and whose standings were signed off (``python -m harness.export --competition
DIR --out DIR/standings --signed-off-by NAME`` writes ``DIR/standings/standings.json``) is an archive: the dashboard
shows its signed standings, read-only.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from harness.common.competition import DEFAULT_PATH, FOLDER_DB, FOLDER_ENV, Competition, database_of

LIST_ENV = "LEADERBOARD_COMPETITIONS"
QUERY = "competition"          # ?competition=<folder name> keeps the chosen one in the address
SIGNED = Path("standings") / "standings.json"  # a competition folder's signed-off standings (harness.export --out)


class CompetitionListError(ValueError):
    """The competitions named for the dashboard cannot be served; the message says which and how to fix it."""


@dataclass(frozen=True)
class Served:
    """One competition the dashboard serves."""
    name: str               # the folder's name, as ?competition= gives it ("" for the repository root's)
    folder: Path | None     # None: the repository root's competition.toml and $LEADERBOARD_DB, as before
    db: str | None = None   # None: the folder's leaderboard.db

    @property
    def config(self) -> Path | None:
        return None if self.folder is None else self.folder / DEFAULT_PATH.name

    @property
    def database(self) -> str | None:
        """The results database this competition reads (None: $LEADERBOARD_DB, as the harness reads it)."""
        if self.db is not None or self.folder is None:
            return self.db
        return str(self.folder / FOLDER_DB)


def named_folders(argv: Sequence[str], env: Mapping[str, str]) -> list[Path]:
    """The folders named by ``--competition DIR`` / ``--competition=DIR`` in ``argv``, then ``$LEADERBOARD_
    COMPETITIONS``, then ``$LEADERBOARD_COMPETITION``: each once, in that order."""
    named: list[str] = []
    args = list(argv)
    for i, arg in enumerate(args):
        if arg == "--competition":
            if i + 1 >= len(args) or args[i + 1].startswith("--"):
                raise CompetitionListError("--competition needs a folder after it, as in `streamlit run "
                                           "leaderboard/app.py -- --competition competitions/shapes`.")
            named.append(args[i + 1])
        elif arg.startswith("--competition="):
            named.append(arg.split("=", 1)[1])
    named += [p for p in (env.get(LIST_ENV) or "").split(os.pathsep) if p.strip()]
    if env.get(FOLDER_ENV):
        named.append(env[FOLDER_ENV])
    out: list[Path] = []
    for path in map(Path, named):
        if all(path.resolve() != seen.resolve() for seen in out):
            out.append(path)
    return out


def served(argv: Sequence[str], env: Mapping[str, str]) -> list[Served]:
    """The competitions to serve, or CompetitionListError: one sentence on the first folder that cannot be."""
    folders = named_folders(argv, env)
    if not folders:
        return [Served("", None)]
    for folder in folders:
        if not (folder / DEFAULT_PATH.name).is_file():
            said = "does not exist" if not folder.is_dir() else f"has no {DEFAULT_PATH.name}"
            raise CompetitionListError(f"the competition folder {folder} {said}; give the dashboard folders that "
                                       f"hold a {DEFAULT_PATH.name} (--competition DIR or ${LIST_ENV}).")
    names = [f.resolve().name for f in folders]
    twice = next((n for n in names if names.count(n) > 1), None)
    if twice is not None:
        raise CompetitionListError(f"two competition folders are named {twice!r}; the address tells competitions "
                                   "apart by their folder's name, so rename one of them.")
    # each its own database, as every command finds it (``harness.common.competition.database_of``)
    return [Served(name, folder, database_of(folder, env=env)) for name, folder in zip(names, folders, strict=True)]


def chosen(competitions: list[Served], asked: str | None, env: Mapping[str, str]) -> tuple[Served, bool]:
    """The competition to show: the one ``?competition=`` asks for, else the current one ($LEADERBOARD_COMPETITION's
    folder when it is served, else the first); and whether an asked-for name was unknown."""
    by_name = {c.name: c for c in competitions}
    if asked and asked in by_name:
        return by_name[asked], False
    current = competitions[0]
    if env.get(FOLDER_ENV):
        wanted = Path(env[FOLDER_ENV]).resolve()
        current = next((c for c in competitions if c.folder is not None and c.folder.resolve() == wanted), current)
    return current, bool(asked)


@dataclass(frozen=True)
class Signed:
    """A competition's signed-off standings, as ``harness.export`` wrote them."""
    by: str
    at: str
    revealed: bool
    entries: list[dict]
    csv_matches: bool       # standings.csv beside it still has the SHA-256 the record holds


def signed_standings(folder: Path) -> Signed | None:
    """``folder/standings/standings.json`` if it is there, else None; CompetitionListError when it cannot be read."""
    path = folder / SIGNED
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        by, at, entries = record["signed_off_by"], record["signed_off_at"], list(record["entries"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CompetitionListError(f"the signed standings {path} cannot be read ({exc}); write them again with "
                                   f"`python -m harness.export --competition {folder} --out {path.parent} "
                                   "--signed-off-by NAME`.") from None
    csv_path = path.with_suffix(".csv")
    matches = csv_path.is_file() and hashlib.sha256(csv_path.read_bytes()).hexdigest() == record.get("csv_sha256")
    return Signed(str(by), str(at), bool(record.get("guest_revealed")), entries, matches)


def archive(competition: Served, rules: Competition, now_utc: datetime | None = None) -> Signed | None:
    """The signed standings when this competition is an archive (its deadline passed and its standings were signed
    off), else None."""
    if competition.folder is None or not rules.deadline_passed(now_utc):
        return None
    return signed_standings(competition.folder)


# The pages a competition offers, by url path: Draw only where one can draw an input (one channel, handwriting);
# an archive changes no more (no Submit, no Organiser) and scores nothing new (no Draw).
PAGES = ("leaderboard", "entry", "head-to-head", "guest-gallery", "what-worked", "draw", "submit", "organiser")


def offered_pages(drawable: bool, archived: bool) -> list[str]:
    """The url paths of the pages shown for a competition, in the order of :data:`PAGES`."""
    left_out = {"draw"} if archived or not drawable else set()
    if archived:
        left_out |= {"submit", "organiser"}
    return [p for p in PAGES if p not in left_out]
