"""The club's dashboard: ``streamlit run leaderboard/app.py`` (reads $LEADERBOARD_DB, default leaderboard.db)."""

import sys
from pathlib import Path

if __package__ in (None, ""):  # `streamlit run leaderboard/app.py` from a checkout that is not pip-installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import streamlit as st

from harness.common.competition import CompetitionConfigError, load
from leaderboard import cache

st.set_page_config(page_title="MNIST club leaderboard", page_icon="🏆", layout="wide")
try:
    load()  # competition.toml ($COMPETITION_CONFIG): every page reads it; a broken file stops here, clearly
except CompetitionConfigError as exc:
    st.error(f"The competition rules cannot be read: {exc}")
    st.stop()
try:
    cache.scorer()  # the watcher that scores uploads, once per server process ($LEADERBOARD_EVALUATE=off: none)
except ValueError as exc:
    st.error(str(exc))

# On a phone the title takes two or three lines, not five, and the page starts nearer the top: the board's table
# (with its first rows) is on the first screen.
st.html("<style>@media (max-width: 640px) { h1 { font-size: 1.3rem !important; padding-top: 0 !important; } "
        "[data-testid='stMainBlockContainer'] { padding-top: 3.5rem !important; } }</style>")

PAGES = [
    st.Page("screens/leaderboard.py", title="Leaderboard", icon="🏆", url_path="leaderboard", default=True),
    st.Page("screens/entry.py", title="Entry", icon="🔎", url_path="entry"),
    st.Page("screens/head_to_head.py", title="Head-to-head", icon="⚔️", url_path="head-to-head"),
    st.Page("screens/guest_gallery.py", title="Guest gallery", icon="✍️", url_path="guest-gallery"),
    st.Page("screens/what_worked.py", title="What worked", icon="🧪", url_path="what-worked"),
    st.Page("screens/draw.py", title="Draw a digit", icon="🖊️", url_path="draw"),
    st.Page("screens/submit.py", title="Submit", icon="📤", url_path="submit"),
    st.Page("screens/organiser.py", title="Organiser", icon="🔑", url_path="organiser"),
]

st.navigation(PAGES).run()
