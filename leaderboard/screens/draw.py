"""Draw a digit: the drawing goes through the guest set's normalisation, then through every entry (isolated)."""

import pandas as pd
import streamlit as st
# streamlit-drawable-canvas registers its frontend when imported: import it inside a Streamlit run only.
from streamlit_drawable_canvas import st_canvas

from leaderboard import cache, draw, figures

settings = cache.settings()
st.title("🖊️ Draw a digit")
st.caption("Draw one digit with the mouse or a finger. It is normalised exactly like the guest's digits, then every "
           "entry reads it in its own sandboxed process.")

left, right = st.columns([1, 2])
with left:
    st.space("medium")  # room for the canvas's floating toolbar
    canvas = st_canvas(stroke_width=18, stroke_color="#000000", background_color="#FFFFFF", height=280, width=280,
                       drawing_mode="freedraw", return_image_data=True, key="digit_canvas")
    drawn = canvas.image_data
if not draw.has_ink(drawn):
    right.info("Draw a digit on the canvas to see what every entry reads.")
    st.stop()
try:
    digit = draw.normalise_drawing(drawn)
except draw.ImageProblem as exc:
    right.warning(f"Could not read the drawing: {exc}.")
    st.stop()
with left:
    st.image(figures.digit_picture(digit, 4), caption="what the models see (normalised 28×28)")

entries = cache.entries_for_drawing(str(settings.submissions))
excluded = cache.board(settings.db_url, cache.revealed()).excluded
entries = [e for e in entries if e.name not in excluded]
if not entries:
    right.warning(f"No entries found in {settings.submissions}.")
    st.stop()

key = draw.digit_key(digit)
progress = right.progress(0.0, text="asking every entry…")
results = []
for n, entry in enumerate(entries, start=1):
    results.append(cache.prediction(entry, entry.content_hash, key, digit))
    progress.progress(n / len(entries), text=f"{n} of {len(entries)} entries have answered")
progress.empty()

table = pd.DataFrame([{"entry": r.display_name, "reads": r.digit, "confidence": None if r.probabilities is None
                       else float(r.probabilities.max() * 100),
                       "probabilities": None if r.probabilities is None else [float(p) for p in r.probabilities],
                       "error": r.error or ""} for r in results])
with right:
    votes = table["reads"].dropna().astype(int).value_counts()
    if len(votes):
        st.metric("The club reads", f"{votes.index[0]}", help=f"{votes.iloc[0]} of {len(table)} entries agree")
    st.dataframe(table, hide_index=True, width="stretch", placeholder="", column_config={
        "entry": st.column_config.TextColumn("Entry", width=200),
        "reads": st.column_config.NumberColumn("Reads", format="%d", width=70),
        "confidence": st.column_config.ProgressColumn("Confidence", min_value=0, max_value=100, format="%.0f%%"),
        "probabilities": st.column_config.BarChartColumn("Probabilities for 0–9", y_min=0, y_max=1, width=220),
        "error": st.column_config.TextColumn("Problem", width=220)})
    best = next((r for r in results if r.probabilities is not None), None)
    if best is not None:
        mean = sum(r.probabilities for r in results if r.probabilities is not None) / \
            sum(r.probabilities is not None for r in results)
        st.markdown("**Mean probability over all entries**")
        st.altair_chart(figures.probability_chart(mean), width="stretch")
