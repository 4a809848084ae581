"""The Organiser page's section for the Submit page: issue a member's personal code (shown once), revoke one, give
an entry to a member, and see the latest uploads. Every action is in the audit log."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from sqlalchemy import Engine

from harness.errors import HarnessError
from harness.store import audit, members
from leaderboard import stats

NEW_CODE = "member_codes.new"  # session key: the code just issued, shown until the organiser dismisses it


def section(engine: Engine) -> None:
    st.subheader("Members' codes (the Submit page)")
    st.caption("A member submits from the Submit page with a personal code. Only a salted hash is kept, so a code "
               "is shown once, here, when issued. An entry belongs to the member who first submits it there (or "
               "to whom you give it below); only they can replace it.")
    if NEW_CODE in st.session_state:
        member, code = st.session_state[NEW_CODE]
        st.success(f"Code for {stats.literal(member)} (shown once; give it to them now):")
        st.code(code, language=None)
        if st.button("Done: hide the code"):
            del st.session_state[NEW_CODE]
            st.rerun()
    with st.form("issue_code", clear_on_submit=True):
        member = st.text_input("Member's name")
        if st.form_submit_button("Issue a code"):
            try:
                code = members.issue_code(engine, member)
            except HarnessError as exc:
                st.error(stats.literal(exc))
            else:
                audit.log_action(engine, "code-issued", f"code {code.partition('-')[0]} for {member.strip()}")
                st.session_state[NEW_CODE] = (member.strip(), code)
                st.rerun()
    issued = members.codes(engine)
    if issued:
        table = pd.DataFrame([{"id": c.id, "member": c.member, "issued (UTC)": c.issued_at,
                               "last used (UTC)": c.last_used_at, "revoked (UTC)": c.revoked_at} for c in issued])
        st.dataframe(table, hide_index=True, width="stretch")
        active = [c for c in issued if c.revoked_at is None]
        with st.form("revoke_code"):
            choice = st.selectbox("Code to revoke", [c.id for c in active],
                                  format_func=lambda i: f"{i} ({next(c.member for c in active if c.id == i)})")
            if st.form_submit_button("Revoke") and choice is not None:
                revoked = members.revoke_code(engine, choice)
                audit.log_action(engine, "code-revoked", f"code {revoked.id} of {revoked.member}")
                st.rerun()
    with st.form("give_entry", clear_on_submit=True):
        st.caption("Give an entry to a member (e.g. one committed with git), so that they can replace it from the "
                   "Submit page.")
        entry = st.text_input("Entry name", key="give_entry_name")
        member = st.text_input("Member's name", key="give_entry_member")
        if st.form_submit_button("Give") and entry.strip():
            try:
                members.give_entry(engine, entry.strip(), member)
            except HarnessError as exc:
                st.error(stats.literal(exc))
            else:
                audit.log_action(engine, "entry-given", f"to {member.strip()}", entry.strip())
                st.success(f"{stats.literal(entry.strip())} now belongs to {stats.literal(member.strip())}.")
    owned, recent = members.owners(engine), members.uploads(engine, 50)
    if owned:
        st.dataframe(pd.DataFrame(owned.items(), columns=["entry", "member"]), hide_index=True, width="stretch")
    if recent:
        st.dataframe(pd.DataFrame(recent), hide_index=True, width="stretch")
