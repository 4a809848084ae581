"""``python -m harness.migrate``: bring a results database made by this or an older harness to the newest schema.

``make_engine`` upgrades on every start, so running this by hand is only needed to see what it does, or to draft a
revision after changing ``harness/store/schema.py`` (``--new "what changed"``; see ``harness.store.upgrade``).
"""

from __future__ import annotations

import argparse
import sys

from sqlalchemy.exc import DBAPIError

from harness import cli
from harness.errors import HarnessError
from harness.store.upgrade import draft_revision, upgrade


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=cli.prog("migrate"), description=__doc__.splitlines()[0])
    cli.add_db_argument(p)
    p.add_argument("--competition", metavar="DIR", help="upgrade the competition folder's own database "
                   "(DIR/leaderboard.db; default: $LEADERBOARD_COMPETITION, else --db)")
    p.add_argument("--new", metavar="MESSAGE",
                   help="draft a revision from schema.py's differences to the upgraded database")
    args = p.parse_args(argv)
    return cli.run(lambda: migrate(args))


def migrate(args: argparse.Namespace) -> int:
    """Upgrade (and draft a revision); a HarnessError ends it with one sentence (see ``main``)."""
    from harness.common import competition
    from harness.store.engine import make_engine, resolve_url, shown_url
    competition.settle(args)
    try:
        engine = make_engine(args.db, create=False)
        try:
            before, after = upgrade(engine)
            if args.new:
                with engine.connect() as connection:
                    print(f"drafted {draft_revision(connection, args.new)}; check it by hand before committing it.")
        finally:
            engine.dispose()
    except DBAPIError as exc:
        raise HarnessError(f"cannot open the database {shown_url(resolve_url(args.db))!r} "
                           f"({str(exc.orig).strip()}).") from exc
    where = shown_url(resolve_url(args.db))
    if before == after:
        print(f"{where}: already at revision {after}.")
    else:
        print(f"{where}: revision {before or 'none'} -> {after}.")
    return 0


if __name__ == "__main__":
    sys.exit(cli.ended(main))
