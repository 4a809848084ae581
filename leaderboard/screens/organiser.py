"""Organiser controls behind a password: reveal, re-run the evaluation, hide or disqualify. All logged."""

import os

import pandas as pd
import streamlit as st

from harness.errors import HarnessError
from harness.store import audit, eval_sets, moderation, runs, versions
from leaderboard import admin, cache, config, drawing, scorer as scoring_service, stats, views
from leaderboard.screens import member_codes

settings = cache.settings()
engine = cache.current_engine()
st.title("🔑 Organiser")

try:
    password = config.configured_password(os.environ, st.secrets)
except ValueError as exc:  # a secrets file Streamlit cannot read: say so, the controls stay off
    st.error(stats.literal(exc))
    st.stop()
if password is None:
    st.info(f"Organiser controls are off: no password is configured. Set the environment variable "
            f"`{config.PASSWORD_ENV}` or `{config.PASSWORD_SECRET}` in `.streamlit/secrets.toml`, then restart.")
    st.stop()

if not st.session_state.get("organiser"):
    with st.form("login"):
        given = st.text_input("Organiser password", type="password")
        if st.form_submit_button("Unlock"):
            if admin.password_ok(given, password):
                st.session_state["organiser"] = True
                audit.log_action(engine, "login", "organiser unlocked the controls")
                st.rerun()
            audit.log_action(engine, "login-failed", "wrong organiser password")
            st.error("Wrong password.")
    st.stop()

revealed = cache.revealed()
words = cache.names()
results = "guest results" if words.is_mnist else f"results on {words.secret}"  # the secret set's, as said here
st.subheader(results[:1].upper() + results[1:])
guest_set = eval_sets.current_datasets(engine, revealed=True).get(words.secret_kind)  # organisers see which set it is
if guest_set is not None:
    st.markdown(f"The {results} are on {stats.secret_set_text(guest_set, words)}.")
if revealed:
    st.success(f"The {results} are revealed on every page.")
    if st.button("Seal them again"):
        admin.set_revealed(engine, False)
        cache.clear()
        st.rerun()
else:
    st.warning(f"The {results} are sealed.")
    on_sample = guest_set is not None and guest_set.source == "sample"
    sure = on_sample and st.checkbox("Reveal results on the sample set anyway (members will see them as the guest "
                                     "results)")
    if on_sample:
        st.caption("To reveal the real guest's digits instead: import them into `mystery_digits/` and run the "
                   "evaluation again.")
    if st.button(f"Reveal the {results}", type="primary", disabled=on_sample and not sure):
        admin.set_revealed(engine, True)
        cache.clear()
        st.rerun()

st.subheader("Scoring uploads")
try:
    scorer = cache.scorer()
except ValueError as exc:
    scorer = None
    st.error(str(exc))
st.caption(stats.literal(scorer.status() if scorer is not None else scoring_service.off_sentence()))

st.subheader("Re-run the evaluation")
jobs = cache.jobs()  # shared by every session of this server: a reload keeps the progress


@st.fragment(run_every=2)
def job_progress():
    """The start button lives here too, so that it is enabled again as soon as a run ends, without a reload."""
    running = any(job.running for job in jobs)
    force = st.checkbox("Re-evaluate every entry, even unchanged ones (--force)")
    if st.button("Start the evaluation", disabled=running):
        jobs.append(admin.start_evaluation(engine, settings, force))
        st.rerun(scope="fragment")
    if not jobs:
        st.caption("No evaluation started from the dashboard since the server started.")
        return
    job = jobs[-1]
    entries = len(drawing.entries_on_disk(settings.submissions))
    fraction, text = admin.run_progress(runs.latest_run(engine), job, entries)
    st.progress(fraction, text=stats.literal(f"{'running' if job.running else 'done'} · {text}"))
    st.code(job.log_tail() or "(no output yet)", language=None)
    if not job.running and st.session_state.get("seen_finished") != str(job.log_path):
        st.session_state["seen_finished"] = str(job.log_path)  # once per run: the whole page shows its outcome
        cache.clear()
        st.rerun()


job_progress()

st.subheader("Hide or disqualify an entry")
board = cache.board(settings.db_url, revealed)
names = sorted(set(board.board["entry"]) | set(board.hidden))
current = moderation.decisions(engine)
MODERATE = ("moderate_entry", "moderate_state", "moderate_reason")  # the form's widgets: emptied once applied
if "moderated" in st.session_state:  # what the last Apply did, said once; the form back at its defaults
    st.success(stats.literal(st.session_state.pop("moderated")))
    st.session_state.update(dict(zip(MODERATE, (names[0] if names else None, "visible", ""), strict=True)))
with st.form("moderate"):
    name = st.selectbox("Entry", names, key=MODERATE[0])
    state = st.radio("Make it", list(moderation.MODERATION_STATES), horizontal=True, key=MODERATE[1],
                     format_func={"visible": "visible (undo)", "hidden": "hidden from every page",
                                  "disqualified": "disqualified (shown unranked, with the reason)"}.get)
    reason = st.text_input("Reason (required to hide or disqualify)", key=MODERATE[2])
    if st.form_submit_button("Apply"):
        try:
            changed = admin.moderate(engine, name, state, reason)
        except ValueError as exc:
            st.error(stats.literal(exc))
        else:
            if changed:
                st.session_state["moderated"] = views.moderation_text(name, state, reason)
                cache.clear()
                st.rerun()
            st.info(f"Nothing to change: {stats.literal(name)} is already {state}.")
if current:
    st.dataframe(pd.DataFrame([{"entry": n, "state": s, "reason": r} for n, (s, r) in current.items()]),
                 hide_index=True, width="stretch")

st.subheader("When a version counts as submitted")
rules = cache.rules()
st.caption(f"Deadline: {rules.deadline.isoformat() if rules.deadline else 'none'} (from {rules.source}). A version's "
           "time is when the harness first saw it; correct it here when, say, an upload failed before the deadline.")
entry_name = st.selectbox("Entry", names, key="override_entry")  # outside the form: the versions follow it
history = versions.history(engine, entry_name) if entry_name else []
OVERRIDE = ("override_when", "override_reason", "override_clear")  # the form's fields: emptied once saved
if "version_saved" in st.session_state:
    st.success(stats.literal(st.session_state.pop("version_saved")))
    st.session_state.update(dict(zip(OVERRIDE, ("", "", False), strict=True)))
with st.form("version_time"):
    by_number = {v.number: v for v in history}
    choice = st.selectbox("Version (newest first)", views.newest_first(history),
                          format_func=lambda n: views.version_text(by_number[n], rules), key="override_version")
    when = st.text_input(f"Counts as submitted at (ISO time; without an offset: {rules.timezone})",
                         placeholder="2027-01-10T23:30:00", key=OVERRIDE[0])
    why = st.text_input("Reason (required; kept in the audit log)", key=OVERRIDE[1])
    clear = st.checkbox("Drop the override instead (back to when the harness first saw it)", key=OVERRIDE[2])
    if st.form_submit_button("Save") and choice:
        try:
            at = None if clear else versions.parse_time(when, rules.timezone)
            changed = versions.override(engine, entry_name, str(choice), at, why)
        except HarnessError as exc:
            st.error(stats.literal(exc))
        else:
            st.session_state["version_saved"] = f"{entry_name}: {views.version_text(changed, rules)}."
            cache.clear()
            st.rerun()

member_codes.section(engine)

st.subheader("Storage")
st.markdown(views.storage_text(engine, rules))

st.subheader("Audit log")
st.dataframe(pd.DataFrame(audit.audit_log(engine), columns=["at", "action", "entry", "detail"]), hide_index=True,
             width="stretch", column_config={"at": st.column_config.DatetimeColumn("time (UTC)",
                                                                                   format="YYYY-MM-DD HH:mm:ss"),
                                             "detail": st.column_config.TextColumn("detail", width="large")})
