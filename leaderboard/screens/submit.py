"""Submit an entry without git: a personal code, the entry's name and files; the check's verdict in plain words."""

import streamlit as st

from leaderboard import cache, stats, submitting

settings = cache.settings()
st.title("📤 Submit an entry")
try:
    limits = submitting.limits()
except ValueError as exc:
    st.error(str(exc))
    st.stop()
st.caption(f"Upload `model.py` with its weights (`weights.pt` or `weights.safetensors`), or a `model.pt2`, plus "
           f"`entry.toml` if you have one (or all of them in one `.zip`); the folder `harness.train` writes can be "
           f"uploaded as it is (its curve, plots, logs and README are left out). The files are checked at once in a "
           f"sandbox; if the check passes they become your entry's new version, which is scored in a few minutes: "
           f"it appears on the Leaderboard as pending, then with its score. Up to "
           f"{limits.max_bytes / 1e6:g} MB per upload, {limits.per_hour} checked uploads per hour. The organiser gives "
           f"you your personal code.")

with st.form("submit"):
    code = st.text_input("Your personal code", type="password", placeholder="12-…")
    name = st.text_input("Entry name", placeholder="my-cnn",
                         help="Letters, digits, '-', '_' and '.'; an entry is yours once you first submit it.")
    files = st.file_uploader("Files", accept_multiple_files=True)
    sent = st.form_submit_button("Check and submit", type="primary")

if sent:
    with st.spinner("Checking your entry in the sandbox…"):
        outcome = submitting.upload(cache.current_engine(), settings.submissions, cache.rules(), code, name, files,
                                    st.context.ip_address)  # wrong codes are limited per address and member
    first, *more = outcome.sentences  # they quote file names and the check's errors: the member's words, escaped
    (st.success if outcome.accepted else st.error)(stats.literal(first))
    for sentence in more:
        (st.warning if outcome.late and "deadline" in sentence else st.info)(stats.literal(sentence))
    if outcome.report:
        r = outcome.report
        cols = st.columns(3)
        if r["accuracy"] is not None:
            cols[0].metric(f"Accuracy on {r['sample']}", f"{100 * r['accuracy']:.1f}%")
        cols[1].metric("Parameters", "unreadable" if r["params"] is None else f"{r['params']:,}")
        if r["images_per_second"] is not None:
            cols[2].metric("Speed in the check", f"{r['images_per_second']:,.0f} images/s")
    if outcome.accepted:
        cache.clear()
