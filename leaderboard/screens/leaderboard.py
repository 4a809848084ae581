"""The board: one row per entry, honest ranking with ties, sealed guest columns before the reveal."""

from zoneinfo import ZoneInfo

import streamlit as st

from leaderboard import cache, figures, stats

url = cache.settings().db_url
revealed = cache.revealed()
view = cache.board(url, revealed)
board = view.board

rules = cache.rules()
st.title(f"🏆 {rules.title}")
if rules.deadline is not None:
    when = rules.deadline.astimezone(ZoneInfo(rules.timezone)).strftime("%Y-%m-%d %H:%M %Z")
    if rules.deadline_passed():
        st.caption(f"The deadline was {when}. Versions submitted later are shown as **late** and are not ranked.")
    else:
        st.caption(f"Deadline: **{when}**. Each entry's latest version submitted by then is the one ranked.")
if not revealed:
    st.info("🔒 **The guest result is sealed until the reveal.** The board is ranked by MNIST test accuracy for now; "
            "the guest columns open when the organisers reveal them.")
elif view.primary == "guest":
    n = view.datasets["guest"].size
    st.success(f"Ranked by the guest's {n} handwritten digits (one digit = {100 / n:.2g} percentage "
               f"point{'' if n == 100 else 's'}), then by MNIST.")
else:
    st.warning("Revealed, but not every entry has a result on the current guest set: ranked by MNIST.")
st.caption("Entries that an exact McNemar test on the same digits cannot separate from the entry above (p ≥ 0.05) "
           "are marked **tied**: the data cannot say which is better. ↑ higher is better, ↓ lower is better.")

if board.empty:
    st.warning("No evaluations yet. Run `python -m harness.evaluate` to score the entries in `submissions/`.")
    st.stop()

left, middle, right = st.columns([2, 2, 2])
search = left.text_input("Filter by entry or author", placeholder="e.g. Ada")
STATUSES = ["ok", "failed", "late", "superseded", "disqualified"]
statuses = middle.multiselect("Status", STATUSES, default=STATUSES)
sort_labels = {"rank": "Rank", "mnist_accuracy": "MNIST accuracy", "params": "Parameters",
               "images_per_second": "Speed", "evaluated_at": "Last evaluated"}
if revealed:
    sort_labels["guest_accuracy"] = "Guest accuracy"
with right:
    sort_by = st.selectbox("Sort by", list(sort_labels), format_func=sort_labels.get)
    descending = st.toggle("Descending", value=sort_by in ("mnist_accuracy", "guest_accuracy", "images_per_second"))
shown = stats.board_display(stats.filter_board(board, search, statuses, sort_by, descending), revealed)

hp_columns = [c for c in shown.columns if c.startswith("hp: ")]
guest_column = (st.column_config.ProgressColumn("Guest accuracy ↑", min_value=0, max_value=100, format="%.0f%%",
                                                help="Share of the guest's digits read right")
                if revealed else st.column_config.TextColumn("Guest accuracy ↑", help="Sealed until the reveal"))
config = {
    "medal": st.column_config.TextColumn("", width=40, pinned=True),
    "rank": st.column_config.NumberColumn("Rank ↓", format="%d", width=70, pinned=True,
                                          help="1 is best; equal scores share a rank"),
    "separation": st.column_config.TextColumn("vs. entry above", width=150,
                                              help="Exact McNemar test on the same digits as the entry above"),
    "display_name": st.column_config.TextColumn("Entry", width=170, pinned=True),
    "author": st.column_config.TextColumn("Author", width=110),
    "guest_pct": guest_column,
    "guest_ci": st.column_config.TextColumn("Guest 95% interval", width=125),
    "mnist_pct": st.column_config.NumberColumn("MNIST accuracy ↑", format="%.2f%%", width=130),
    "params": st.column_config.NumberColumn("Parameters ↓", format="localized", width=110,
                                            help="Fewer parameters is a lighter model"),
    "speed": st.column_config.NumberColumn("Speed ↑ (img/s)", format="localized", width=120,
                                           help="Images per second during the evaluation"),
    "evaluated_at": st.column_config.DatetimeColumn("Last evaluated (UTC)", format="YYYY-MM-DD HH:mm", width=150),
    "status": st.column_config.TextColumn("Status", width=260),
    "history_pct": st.column_config.LineChartColumn("History (% by version)", width=150),
    "versions": st.column_config.NumberColumn("Versions", format="%d", width=80),
    **{c: st.column_config.TextColumn(c.removeprefix("hp: "), help="hyperparameter") for c in hp_columns},
}
order = ["medal", "rank", "display_name", "author", "guest_pct", "guest_ci", "mnist_pct", "separation", "params",
         "speed", "status", "evaluated_at", "history_pct", "versions", *hp_columns]
event = st.dataframe(shown, column_order=order, column_config=config, hide_index=True, on_select="rerun",
                     selection_mode="single-row", key="board_table", placeholder="", height=min(38 + 35 * len(shown), 760))
if event.selection.rows:
    st.switch_page("screens/entry.py", query_params={"entry": shown.iloc[event.selection.rows[0]]["entry"]})
st.caption("Select a row to open that entry's page.")

failed = shown[shown["status"] != "ok"]
if len(failed):
    st.subheader("Not ranked")
    for _, row in failed.iterrows():
        st.markdown(f"- **{row['display_name']}** ({row['entry']}): {row['status']}")

kind = view.primary
low, high, value = f"{kind}_ci_low", f"{kind}_ci_high", f"{kind}_accuracy"
ranked = board[board["rank"].notna()]
if len(ranked):
    st.markdown(f"**{'Guest' if kind == 'guest' else 'MNIST'} accuracy with its 95% interval**, in rank order")
    st.altair_chart(figures.interval_chart(ranked, low, high, value), width="stretch")

st.download_button("Download the board as CSV", stats.board_csv(shown, revealed), file_name="leaderboard.csv",
                   mime="text/csv", icon="⬇️")
