"""Two entries compared on the same digits: accuracies, the paired test in plain words, the disagreements."""

import streamlit as st

from leaderboard import cache, figures, stats

url = cache.settings().db_url
words = cache.names()
revealed = cache.revealed()
view = cache.board(url, revealed)
board = view.board
ok = board[board["status"] == "ok"]
st.title("⚔️ Head-to-head")
if len(ok) < 2:
    st.warning("Two entries with a successful evaluation are needed for a head-to-head.")
    st.stop()

names = ok["entry"].tolist()
labels = dict(zip(ok["entry"], ok["display_name"], strict=True))
left, middle, right = st.columns([2, 2, 1])
a = left.selectbox("First entry", names, index=0, format_func=labels.get)
b = middle.selectbox("Second entry", names, index=1, format_func=labels.get)
sets = {words.public_kind: words.public} | ({words.secret_kind: words.secret} if revealed else {})
kinds = list(sets)
# The set the board ranks on first, so that this page never contradicts the board.
kind = right.radio("Digits" if words.is_mnist else "Set", kinds,
                   index=kinds.index(view.primary) if view.primary in kinds else 0,
                   format_func=lambda k: sets[k] + (" (ranked)" if k == view.primary else ""), horizontal=False)
if not revealed:
    right.caption(f"🔒 {words.secret}: sealed until the reveal.")
if a == b:
    st.info("Pick two different entries.")
    st.stop()

duel = cache.duel(url, a, b, kind, revealed, cache.rules())
if duel is None:
    st.warning("These two entries have no results on the same digits.")
    st.stop()
r = duel.result
name_a, name_b = stats.literal(labels[a]), stats.literal(labels[b])
item = words.item
on = (stats.secret_set_text(view.datasets[kind], words) if kind == words.secret_kind
      else f"the {r.total:,} MNIST test digits" if words.is_mnist else f"{words.public}: {r.total:,} {item}s")
st.markdown(f"**They read {len(r.disagree):,} of the {r.total:,} {item}s differently**; all of them are below.  \n"
            f"Compared on {on}.")
cols = st.columns(3)
cols[0].metric(name_a, f"{100 * r.correct_a / r.total:.2f}%", help=f"{r.correct_a:,} of {r.total:,} right")
cols[1].metric(name_b, f"{100 * r.correct_b / r.total:.2f}%", help=f"{r.correct_b:,} of {r.total:,} right")
cols[2].metric("p-value (exact McNemar)", stats.format_p(r.p_value),
               help=f"How often chance alone would split the {item}s this unevenly, were the two equally good")
st.markdown(f"#### In plain words\n{r.verdict(name_a, name_b)}")
st.caption(f"Only {name_a} right: {r.only_a:,} · only {name_b} right: {r.only_b:,} · both wrong: {r.both_wrong:,} · "
           f"different readings: {len(r.disagree):,} of {r.total:,} {item}s.")

st.subheader(f"The {len(r.disagree):,} {item}s on which they disagree")
if not len(r.disagree):
    st.success(f"They read every {item} the same way.")
    st.stop()
PAGE = 60
pages = stats.pages(len(r.disagree), PAGE)
number = 1
if 1 < len(pages) <= 12:
    number = st.segmented_control("Page", list(range(1, len(pages) + 1)), default=1, key=f"page_{a}_{b}_{kind}",
                                  format_func=lambda n: f"{pages[n - 1][0] + 1:,}–{pages[n - 1][1]:,}") or 1
elif len(pages) > 12:
    number = st.number_input(f"Page (of {len(pages)}, {PAGE} {item}s each)", 1, len(pages), 1,
                             key=f"page_{a}_{b}_{kind}")
start, stop = pages[number - 1]
shown = r.disagree[start:stop]
if duel.images is not None:
    st.image([figures.digit_picture(duel.images[i], 4) for i in shown],
             caption=[f"{words.label(duel.labels[i])}: A{words.label(duel.pred_a[i])}"
                      f"{'✓' if duel.pred_a[i] == duel.labels[i] else '✗'} B{words.label(duel.pred_b[i])}"
                      f"{'✓' if duel.pred_b[i] == duel.labels[i] else '✗'}" for i in shown])
st.caption(f"{item.capitalize()}s {start + 1:,}–{stop:,} of {len(r.disagree):,}. Under each {item}: its true label, "
           "then "
           f"A = {name_a} "
           f"and B = {name_b} with their readings; ✓ right, ✗ wrong.")
