"""The board: who is winning in one look (rank, name, score with its interval, status), all columns on demand."""

from zoneinfo import ZoneInfo

import streamlit as st

from leaderboard import cache, competitions, figures, stats, views

rules = cache.rules()
words = cache.names()
signed = competitions.archive(cache.current(), rules)
if signed is not None:  # the deadline passed and the standings were signed off: they are the board, read-only
    st.title(f"🏆 {rules.title}")
    st.info(stats.literal(views.archive_text(signed, rules)))
    if not signed.csv_matches:
        st.warning("standings.csv beside the signed record no longer has the SHA-256 it was signed with.")
    st.dataframe(views.archive_table(signed, words), hide_index=True, width="stretch", key="archive_table")
    st.stop()
url = cache.settings().db_url
left_out = cache.left_out(str(cache.settings().submissions))  # folders not evaluated: a row each, saying why
revealed = cache.revealed()
pending = cache.pending(url)  # uploads not scored yet: rows of their own, never ranked (read before the board, so
view = cache.board(url, revealed)  # that a result stored in between shows twice for a moment, never not at all)
board = view.board

QUEUE_SECONDS = 3  # how often a page showing pending uploads looks at the queue
st.title(f"🏆 {rules.title}")


def ranked_by() -> None:
    """Which digits rank the board (under the table: on a phone the table comes first)."""
    if not words.is_mnist:
        st.info(stats.ranked_by_text(view.datasets, revealed, view.ranks_on_secret, words))
    elif not revealed:
        st.info("🔒 **The guest result is sealed until the reveal.** The board is ranked by MNIST test accuracy for "
                "now; the guest columns open when the organisers reveal them.")
    elif view.ranks_on_secret:
        n = view.datasets["guest"].size
        (st.warning if view.datasets["guest"].source == "sample" else st.success)(
            f"Ranked by {stats.guest_set_text(view.datasets['guest'])}; one digit = {100 / n:.2g} percentage "
            f"point{'' if n == 100 else 's'}. Then by MNIST.")
    else:
        st.warning("Revealed, but not every entry has a result on the current guest set: ranked by MNIST.")


if view.verdict:
    st.markdown(f"**{stats.literal(view.verdict)}**")  # it names the leader: the member's words

if left_out:  # a folder name or file name discovery refuses: never evaluated, so never in the board below
    st.dataframe([{"entry": name, "left out because": why} for name, why in sorted(left_out.items())],
                 hide_index=True, key="left_out_table")
if len(pending):  # drawn again as the queue moves, until the last upload's result is on the board
    seen = stats.queue_key(pending)

    @st.fragment(run_every=QUEUE_SECONDS)
    def follow_queue():
        if stats.queue_key(cache.pending(url)) != seen:
            st.rerun()

    follow_queue()
if board.empty and not len(pending):
    ranked_by()
    st.info("No entries scored yet. Upload one on the Submit page: it shows here as pending, then with its score "
            "(organisers: entries in `submissions/` are scored by the dashboard, or by `python -m harness.evaluate`).")
    st.stop()

STATUSES = ["ok", "failed", "late", "superseded", "disqualified", stats.PENDING]
sort_labels = {"rank": "Rank", "mnist_accuracy": f"{words.public_score} accuracy", "params": "Parameters",
               "images_per_second": "Speed", "evaluated_at": "Last evaluated"}
if revealed:
    sort_labels["guest_accuracy"] = f"{words.secret_score} accuracy"
board_slot = st.container()  # the table first, its controls under it: on a phone the first screen is the board
with st.expander("Filter, sort, all columns"):
    left, middle, right = st.columns(3)  # side by side on a desktop, stacked on a phone
    search = left.text_input("Filter by entry or author", placeholder="e.g. Ada")
    statuses = middle.multiselect("Status", STATUSES, default=STATUSES)
    sort_by = right.selectbox("Sort by", list(sort_labels), format_func=sort_labels.get)
    descending = left.toggle("Descending",
                             value=sort_by in ("mnist_accuracy", "guest_accuracy", "images_per_second"))
    details = middle.toggle("All columns", value=False, help="Author, both accuracies, parameters, speed, history…")
shown = stats.board_display(stats.filter_board(stats.with_pending(board, pending), search, statuses, sort_by,
                                               descending), revealed)

kind = view.slot  # "guest" when ranked on the secret set, else "mnist": the frame's columns for it
score_title = f"{words.column(kind)} ↑"  # one line on a phone; the interval's in the help
widths = stats.compact_widths(stats.with_pending(board, pending), score_title)
hp_columns = [c for c in shown.columns if c.startswith("hp: ") and c not in stats.NOT_IN_CSV]
secret_title = f"{words.secret_score} accuracy ↑"
secret_help = "Share of the guest's digits read right" if words.is_mnist else f"Share of {words.secret} read right"
guest_column = (st.column_config.ProgressColumn(secret_title, min_value=0, max_value=100, format="%.0f%%",
                                                help=secret_help)
                if revealed else st.column_config.TextColumn(secret_title, help="Sealed until the reveal"))
config = {
    "place": st.column_config.TextColumn("#", width=widths["place"], pinned=True,
                                         help="Rank: 1 is best; equal scores share it"),
    stats.NAME_COLUMN: st.column_config.TextColumn("Entry", width=widths[stats.NAME_COLUMN],
                                                   help="Tap a name to open the entry's page"),
    "score": st.column_config.TextColumn(score_title, width=widths["score"],
                                         help="The ranked accuracy, then its 95% interval in brackets"
                                              + ("" if words.is_mnist else f" (on {words.title(kind)})")),
    "state": st.column_config.TextColumn("Status", width=widths["state"],
                                         help="≈ #1: the digits cannot separate it from #1 (exact McNemar "
                                              "test, Holm-corrected over the board)"),
    "author": st.column_config.TextColumn("Author", width=110),
    "guest_pct": guest_column,
    "guest_ci": st.column_config.TextColumn(f"{words.secret_score} 95% interval", width=125),
    "mnist_pct": st.column_config.NumberColumn(f"{words.public_score} accuracy ↑", format="%.2f%%", width=130),
    "separation": st.column_config.TextColumn("vs. the leader", width=170,
                                              help="Exact McNemar test against #1, Holm-corrected over the board"),
    "params": st.column_config.NumberColumn("Parameters ↓", format="localized", width=110,
                                            help="Fewer parameters is a lighter model"),
    "speed": st.column_config.NumberColumn("Speed ↑ (img/s)", format="localized", width=120,
                                           help="Images per second during the evaluation"),
    "evaluated_at": st.column_config.DatetimeColumn("Last evaluated (UTC)", format="YYYY-MM-DD HH:mm", width=150),
    "status": st.column_config.TextColumn("Details", width=260),
    "history_pct": st.column_config.LineChartColumn("History (% by version)", width=150),
    "versions": st.column_config.NumberColumn("Versions", format="%d", width=80),
    **{c: st.column_config.TextColumn(c.removeprefix("hp: "), help="hyperparameter") for c in hp_columns},
}
order = ["place", stats.NAME_COLUMN, "score", "state"]
if details:
    order += ["author", "guest_pct", "guest_ci", "mnist_pct", "separation", "params", "speed", "status",
              "evaluated_at", "history_pct", "versions", *hp_columns]
rows = stats.ROW_HEIGHT  # rows this tall wrap a cell's text: a long name takes two or three lines, never cut
table = board_slot.dataframe(shown[order], column_config=config, hide_index=True, key="board_table",
                             placeholder="", height=min(37 + rows * len(shown), 37 + rows * 8), row_height=rows,
                             on_select="rerun", selection_mode="single-cell")
# At most eight rows high (557 px): on a phone's 844 px the page around the table still scrolls under the thumb.
picked = stats.picked_entry(table.selection, shown["entry"].tolist())
if picked is not None and picked in set(board["entry"]):  # in this tab and session; a pending row has no page
    st.switch_page("screens/entry.py", query_params={"entry": picked})
ranked_by()
st.caption(f"Tap a name to open its page. ≈ #1: an exact McNemar test on the same {words.item}s, Holm-corrected for "
           "the number of entries, cannot separate it from #1 (α = 0.05).")
if rules.deadline is not None:
    when = rules.deadline.astimezone(ZoneInfo(rules.timezone)).strftime("%Y-%m-%d %H:%M %Z")
    if rules.deadline_passed():
        st.caption(f"The deadline was {when}. Versions submitted later are shown as **late** and are not ranked.")
    else:
        st.caption(f"Deadline: **{when}**. Each entry's latest version submitted by then is the one ranked.")

waiting = stats.is_pending(shown)
if waiting.any():
    st.caption("⏳ Pending: an upload waiting to be scored, or being scored (a few minutes); it is never ranked "
               "until its result is here. This page follows it.")
failed = shown[(shown["status"] != "ok") & ~waiting]
if len(failed):
    st.subheader("Not ranked")
    for _, row in failed.iterrows():
        st.markdown(f"- **{stats.literal(row['display_name'])}** ({stats.literal(row['entry'])}): "
                    f"{stats.literal(row['status'])}")

sets = None if words.is_mnist else (words.public, words.secret)
st.download_button("Download the board as CSV", stats.board_csv(shown[~waiting], revealed, sets),
                   file_name="leaderboard.csv",
                   mime="text/csv", icon="⬇️")

low, high, value = f"{kind}_ci_low", f"{kind}_ci_high", f"{kind}_accuracy"
ranked = board[board["rank"].notna()]
if len(ranked):
    top = len(ranked)
    if len(ranked) > 20:
        choices = [n for n in (20, 50, 100) if n < len(ranked)] + [len(ranked)]
        top = st.segmented_control("Entries in the chart", choices, default=20,
                                   format_func=lambda n: "all" if n == len(ranked) else f"top {n}") or 20
    st.markdown(f"**{words.score(kind)} accuracy with its 95% interval**, in rank order")
    st.altair_chart(figures.interval_chart(ranked, low, high, value, top=top), width="stretch")
