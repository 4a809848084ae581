"""Draw a digit: nothing runs until "Read my digit"; then every warm entry reads the drawing and fills in its row."""

import streamlit as st

# streamlit-drawable-canvas registers its frontend when imported: import it inside a Streamlit run only.
from streamlit_drawable_canvas import st_canvas

from leaderboard import cache, drawing, figures, stats

settings = cache.settings()
st.title("🖊️ Draw a digit")
st.caption("Draw one digit with the mouse or a finger, then press **Read my digit**. It is normalised exactly like "
           "the guest's digits, then every entry reads it in its own sandboxed process, kept loaded between drawings.")

entries = cache.entries_for_drawing(str(settings.submissions))
excluded = cache.board(settings.db_url, cache.revealed()).excluded
entries = [e for e in entries if e.name not in excluded]
pool = cache.warm_pool()
pool.prepare(entries)  # load them while the visitor draws: the first reading is then warm too

state = st.session_state.setdefault("drawing", {"edits": 0, "start_from": None, "answers": None})
left, right = st.columns([1, 2])
with left:
    # Undo and Clear redraw the same canvas from what is left (the canvas then sends the new drawing); its own
    # toolbar shows only on hover, out of reach on a touch screen, so these buttons are always on the page.
    st.space("medium")  # room for that floating toolbar, above the canvas
    canvas = st_canvas(stroke_width=18, stroke_color="#000000", background_color="#FFFFFF", height=280, width=280,
                       drawing_mode="freedraw", initial_drawing=state["start_from"], return_image_data=True,
                       key="digit_canvas")
    drawn = canvas.image_data
    strokes = len((canvas.json_data or {}).get("objects") or [])
    undo, clear = st.columns(2)
    for column, label, last_only, tip in ((undo, "↶ Undo", True, "Take the last stroke away"),
                                          (clear, "✕ Clear", False, "Start again on an empty canvas")):
        if column.button(label, width="stretch", disabled=strokes == 0, help=tip):
            state["edits"] += 1
            state["start_from"] = drawing.without_strokes(canvas.json_data, state["edits"], last_only)
            st.rerun()
    read = st.button("Read my digit", type="primary", width="stretch", disabled=not drawing.has_ink(drawn))

if not drawing.has_ink(drawn):
    right.info("Draw a digit on the canvas, then press Read my digit to see what every entry reads.")
    st.stop()
try:
    digit = drawing.normalise_drawing(drawn)
except drawing.ImageProblem as exc:
    right.warning(f"Could not read the drawing: {exc}.")
    st.stop()
with left:
    st.image(figures.digit_picture(digit, 4), caption="what the models see (normalised 28×28)")

key = drawing.digit_key(digit)
answers = state["answers"] if state["answers"] and state["answers"][0] == key else None
if not read and answers is None:
    right.info("Press **Read my digit** when the drawing is finished.")
    st.stop()
if not entries:
    right.warning(f"No entries found in {settings.submissions}.")
    st.stop()


def show(slot, result: drawing.Prediction | None, name: str) -> None:
    """One entry's row: its name and reading (or its problem, in full), and its probabilities over the digits."""
    with slot.container(border=True):
        if result is not None and result.probabilities is None:  # the whole width: the sentence is never cut
            st.markdown(f"**{stats.literal(name)}**")
            st.error(f"Problem: {stats.literal(result.error)}", icon="⚠️")
            return
        text, bars = st.columns([2, 3], vertical_alignment="center")
        if result is None:
            text.markdown(f"**{stats.literal(name)}**  \nreading…")
        else:
            text.markdown(f"**{stats.literal(name)}**  \nreads **{result.digit}** · {result.probabilities.max():.0%} "
                          "sure")
            bars.altair_chart(drawing.probability_bars(result.probabilities), width="stretch", height=110)


with right:
    verdict = st.empty()
    slots = {e.name: st.empty() for e in entries}
    names = {e.name: e.display_name for e in entries}
    results = {r.entry: r for r in answers[1]} if answers else {}
    for name, slot in slots.items():
        show(slot, results.get(name), names[name])
    if answers is None:  # read now: each entry's row fills in as it answers
        verdict.info(f"Asking {len(entries):,} entries…")
        for result in drawing.read_all(pool, entries, digit):
            results[result.entry] = result
            show(slots[result.entry], result, names[result.entry])
            verdict.info(f"{len(results):,} of {len(entries):,} entries have answered…")
        state["answers"] = (key, list(results.values()))
    note = drawing.warm_note(pool.memory(), pool.memory_budget, len(entries))
    if note:
        st.caption(note)
    club = drawing.consensus(list(results.values()))
    if club is None:
        verdict.warning("No entry could read the drawing; each one's problem is below.")
    else:
        verdict.metric("The club reads", f"{club[0]}", help=f"{club[1]} of {club[2]} entries that answered agree")
