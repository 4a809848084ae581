"""Streamlit caching around the plain loaders: one engine per URL, short-lived page data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

from harness.common import competition
from harness.common.competition import Competition
from harness.entries.discovery import left_out_folders
from harness.scoring import board as scoring_board
from harness.store import eval_sets, evaluations
from harness.store.engine import make_engine
from leaderboard import config, naming, scorer as scoring_service, views
from leaderboard.competitions import Served
from leaderboard.drawing import entries_on_disk, warm_pool as draw_warm_pool

TTL = 30  # seconds: the harness may write at any time; organiser actions clear the caches at once
PENDING_TTL = 2  # seconds: the queue and the progress of the upload being scored


SERVED = "served_competition"  # session state: the competition this visitor looks at (set by app.py on every run)


def current() -> Served:
    """The competition this page shows (app.py chooses it from the address); the repository root's without one."""
    return st.session_state.get(SERVED) or Served("", None)


def settings() -> config.Settings:
    return config.settings(served=current(), rules=rules())


@st.cache_resource(show_spinner=False)
def engine(url: str):
    return make_engine(url)


def current_engine():
    return engine(settings().db_url)


def rules() -> Competition:
    """The current competition's competition.toml, read on every run (a small file): an edit shows at the next
    click."""
    return competition.load(current().config)


def names() -> naming.Names:
    """What the pages call the current competition's sets and classes."""
    return naming.names_of(rules())


def revealed() -> bool:
    """Read fresh on every run: nothing guest-related may leak because of a stale cache."""
    return scoring_board.revealed(current_engine(), rules())


# The cached loaders below take the rules (``rules()``, read on every run) and key on their repr, so that an edit of
# competition.toml is a new key.
BY_RULES = {Competition: repr}


@st.cache_data(ttl=TTL, show_spinner=False, hash_funcs=BY_RULES)
def _board(url: str, is_revealed: bool, rules: Competition, newest: int) -> views.BoardView:
    return views.board_view(engine(url), is_revealed, rules)


def board(url: str, is_revealed: bool) -> views.BoardView:
    """The board, read again as soon as a new evaluation is stored (a pending upload's result shows at once)."""
    return _board(url, is_revealed, rules(), evaluations.newest_evaluation(engine(url)))


@st.cache_data(ttl=PENDING_TTL, show_spinner=False)
def pending(url: str):
    """The uploads waiting to be scored or being scored, as the board's pending rows."""
    return views.pending(engine(url))


@st.cache_resource(show_spinner=False)
def _scorer(competition: str, db_url: str, _settings: config.Settings) -> scoring_service.Scorer | None:
    return scoring_service.start(_settings)


def scorer() -> scoring_service.Scorer | None:
    """The watcher that scores the current competition's uploads beside this server process, started on its first
    page view (None when $LEADERBOARD_EVALUATE=off); a ValueError when $LEADERBOARD_EVALUATE_ARGS cannot be read."""
    now = settings()
    return _scorer(current().name, now.db_url, now)


@st.cache_data(ttl=TTL, show_spinner=False, hash_funcs=BY_RULES)
def insights_frame(url: str, is_revealed: bool, rules: Competition):
    from harness.scoring import insights
    eng = engine(url)
    return insights.frame(scoring_board.latest(eng, eval_sets.current_datasets(eng, is_revealed), rules), is_revealed,
                          rules.set_kinds)


@st.cache_data(ttl=TTL, show_spinner=False, max_entries=20, hash_funcs=BY_RULES)
def entry(url: str, name: str, is_revealed: bool, rules: Competition) -> views.EntryView | None:
    return views.entry_view(engine(url), name, is_revealed, rules)


@st.cache_resource(show_spinner=False, max_entries=4)
def dataset_images(url: str, dataset_id: int) -> tuple[np.ndarray | None, list[str]]:
    """Datasets never change once stored, so their images are shared read-only across sessions."""
    images, files = eval_sets.dataset_images(engine(url), dataset_id)
    if images is not None:
        images.setflags(write=False)
    return images, files


@st.cache_data(ttl=TTL, show_spinner=False, max_entries=20, hash_funcs=BY_RULES)
def duel(url: str, a: str, b: str, kind: str, is_revealed: bool, rules: Competition) -> views.DuelView | None:
    return views.duel_view(engine(url), a, b, kind, is_revealed, rules)


@st.cache_data(ttl=TTL, show_spinner=False, hash_funcs=BY_RULES)
def guest(url: str, rules: Competition) -> views.GuestView | None:
    return views.guest_view(engine(url), rules)


@st.cache_data(ttl=TTL, show_spinner=False)
def left_out(folder: str) -> dict[str, str]:
    """{folder: why} for the submissions folders that are not evaluated (names only: nothing is hashed)."""
    return left_out_folders(Path(folder))


@st.cache_data(ttl=TTL, show_spinner=False)
def entries_for_drawing(folder: str):
    return entries_on_disk(Path(folder))


@st.cache_resource(show_spinner=False)
def _warm_pool():
    return draw_warm_pool()


def warm_pool():
    """The entries kept warm for Draw-a-digit: one pool per server process, shared by every visitor, within the
    memory budget of competition.toml as it reads now."""
    pool = _warm_pool()
    pool.memory_budget = rules().warm_memory
    return pool


@st.cache_resource
def _jobs(competition: str) -> list:
    return []


def jobs() -> list:
    """Background evaluations started from the organiser page (one list per competition and server process)."""
    return _jobs(current().name)


def clear() -> None:
    st.cache_data.clear()
