"""The club's dashboard: ``streamlit run leaderboard/app.py`` (reads $LEADERBOARD_DB, default leaderboard.db), or
``streamlit run leaderboard/app.py -- --competition DIR [--competition DIR2 ...]`` / $LEADERBOARD_COMPETITIONS for
several competitions, each from its own folder (see leaderboard/competitions.py)."""

import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # `streamlit run leaderboard/app.py` from a checkout that is not pip-installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import streamlit as st

from harness.common.competition import CompetitionConfigError, load
from leaderboard import cache, competitions, naming

st.set_page_config(page_title="MNIST club leaderboard", page_icon="🏆", layout="wide")
try:
    served = competitions.served(sys.argv[1:], os.environ)
except competitions.CompetitionListError as exc:
    st.error(f"The dashboard cannot serve its competitions: {exc}")
    st.stop()
before = st.session_state.get(cache.SERVED)
asked = st.query_params.get(competitions.QUERY) or (before.name if before is not None else None)
current, unknown = competitions.chosen(served, asked, os.environ)
if len(served) > 1:  # the choice, kept in the address; one competition: the dashboard as it always was
    titles = {}
    for c in served:
        try:
            titles[c.name] = load(c.config).title
        except CompetitionConfigError:
            titles[c.name] = c.name
    picked = st.sidebar.radio("Competition", [c.name for c in served], index=served.index(current),
                              format_func=titles.get)
    if picked != current.name:
        st.query_params.clear()  # another competition's entry is not this one's
        current = next(c for c in served if c.name == picked)
    st.query_params[competitions.QUERY] = current.name
    if unknown:
        st.warning(f"No competition called “{asked}” here; showing {titles[current.name]}.")
st.session_state[cache.SERVED] = current
try:
    rules = load(current.config)  # competition.toml: every page reads it; a broken file stops here, clearly
    archived = competitions.archive(current, rules) is not None
except (CompetitionConfigError, competitions.CompetitionListError) as exc:
    st.error(f"The competition rules cannot be read: {exc}")
    st.stop()
names = naming.names_of(rules)
if not archived:
    try:
        cache.scorer()  # the watcher that scores uploads, once per competition and server process
    except ValueError as exc:
        st.error(str(exc))

# On a phone the title takes two or three lines, not five, and the page starts nearer the top: the board's table
# (with its first rows) is on the first screen.
st.html("<style>@media (max-width: 640px) { h1 { font-size: 1.3rem !important; padding-top: 0 !important; } "
        "[data-testid='stMainBlockContainer'] { padding-top: 3.5rem !important; } }</style>")

gallery = "Guest gallery" if names.is_mnist else f"{names.secret}: gallery"
PAGES = {
    "leaderboard": st.Page("screens/leaderboard.py", title="Leaderboard", icon="🏆", url_path="leaderboard",
                           default=True),
    "entry": st.Page("screens/entry.py", title="Entry", icon="🔎", url_path="entry"),
    "head-to-head": st.Page("screens/head_to_head.py", title="Head-to-head", icon="⚔️", url_path="head-to-head"),
    "guest-gallery": st.Page("screens/guest_gallery.py", title=gallery, icon="✍️", url_path="guest-gallery"),
    "what-worked": st.Page("screens/what_worked.py", title="What worked", icon="🧪", url_path="what-worked"),
    "draw": st.Page("screens/draw.py", title="Draw a digit", icon="🖊️", url_path="draw"),
    "submit": st.Page("screens/submit.py", title="Submit", icon="📤", url_path="submit"),
    "organiser": st.Page("screens/organiser.py", title="Organiser", icon="🔑", url_path="organiser"),
}

st.navigation([PAGES[p] for p in competitions.offered_pages(names.drawable and names.digits, archived)]).run()
