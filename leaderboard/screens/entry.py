"""One entry: confusion matrices, misread digits as the model saw them, metadata, log and versions."""

import streamlit as st

from leaderboard import cache, figures, stats, views

url = cache.settings().db_url
words = cache.names()
revealed = cache.revealed()
board = cache.board(url, revealed).board
# an entry with a late version: once
entries = list(dict.fromkeys(zip(board["entry"], board["display_name"], strict=True)))
st.title("🔎 Entry")
if not entries:
    st.info("No entries scored yet: an entry's page opens once it has a score on the Leaderboard.")
    st.stop()

names = [name for name, _ in entries]
labels = dict(entries)
wanted = st.query_params.get("entry")
name = st.selectbox("Entry", names, index=names.index(wanted) if wanted in names else None if wanted else 0,
                    format_func=lambda n: f"{labels[n]} ({n})", placeholder="Choose an entry")
if name is None:  # an unknown ?entry=: say so rather than open another entry in its place
    st.error(f"No entry called “{stats.literal(wanted)}”; choose one from the list.")
    st.stop()
st.query_params["entry"] = name
view = cache.entry(url, name, revealed, cache.rules())
if view is None:
    st.error(f"No visible entry named {stats.literal(name)}.")
    st.stop()
s = view.summary

st.header(stats.literal(s.display_name))
st.markdown(f"by **{stats.literal(s.author or 'unknown author')}** · folder {stats.literal(s.entry_name)} · last "
            f"evaluated {s.started_at:%Y-%m-%d %H:%M} UTC in {s.seconds:.1f} s on {s.device}"
            f"{' · ⚠️ not sandboxed' if s.sandboxed is False else ''}"
            + (f"  \n{stats.literal(s.description)}" if s.description else ""))
if s.standing == "disqualified":
    st.error(f"Disqualified by the organisers: {stats.literal(s.note)}")
elif s.standing == "late":
    st.warning("Every version of this entry was submitted after the deadline: shown, not ranked.")
elif s.standing == "superseded":
    st.info(f"Not ranked: {stats.literal(s.note)}.")  # it names the author
if view.late is not None:
    late_mnist = view.late.scores.get(words.public_kind)
    score = f" ({words.public_score} {100 * late_mnist.accuracy:.2f}% when evaluated)" if late_mnist else ""
    st.warning(f"A newer version, submitted after the deadline on {view.late.submitted_at:%Y-%m-%d %H:%M} UTC, is "
               f"not ranked{score}. This page shows the version that counts.")
if s.status != "ok":
    st.error(f"The latest evaluation failed: {stats.literal(s.error)}")  # the entry's own words in it

cols = st.columns(5)
mnist = view.sets.get(words.public_kind)
cols[0].metric(f"{words.public_score} accuracy ↑", f"{100 * mnist.accuracy:.2f}%" if mnist else "–",
               help=f"95% interval {100 * mnist.ci[0]:.2f}–{100 * mnist.ci[1]:.2f}%" if mnist else None)
guest = view.sets.get(words.secret_kind)
if revealed:
    cols[1].metric(f"{words.secret_score} accuracy ↑", f"{100 * guest.accuracy:.0f}%" if guest else "–",
                   help=f"{guest.correct:,} of {guest.total:,} right, on "
                        f"{stats.secret_set_text(guest.dataset, words)}; 95% interval {100 * guest.ci[0]:.0f}–"
                        f"{100 * guest.ci[1]:.0f}%" if guest else None)
else:
    cols[1].metric(f"{words.secret_score} accuracy ↑", "🔒 sealed", help="Sealed until the reveal")
cols[2].metric("Parameters ↓", f"{s.params:,}" if s.params else "–")
cols[3].metric("Speed ↑ (images/s)", f"{s.images_per_second:,.0f}" if s.images_per_second else "–")
cols[4].metric("Weights", f"{s.weights_bytes / 1e6:.2f} MB", help=f"sha256 {s.weights_hash}")

tab_names = [words.public] + ([words.secret] if revealed and guest else []) + ["Details", "Versions"]
tabs = dict(zip(tab_names, st.tabs(tab_names), strict=True))
classes = words.axis_classes
item = words.item

for tab_name, result in ((words.public, mnist), (words.secret, guest)):
    if tab_name not in tabs:
        continue
    with tabs[tab_name]:
        if result is None:
            st.info("No result on this set (the evaluation failed).")
            continue
        images, _ = cache.dataset_images(url, result.dataset.id)
        if result.kind == words.secret_kind:
            st.caption(f"On {stats.secret_set_text(result.dataset, words)}.")
        chart_key, true_key, pred_key = (f"{part}_{name}_{result.kind}" for part in ("cm", "true", "pred"))
        default = stats.top_confusion(result.confusion) or (0, 0)
        st.session_state.setdefault(true_key, default[0])
        st.session_state.setdefault(pred_key, default[1])

        def pick_cell(chart_key=chart_key, true_key=true_key, pred_key=pred_key):
            cell = stats.selected_cell(st.session_state.get(chart_key))
            if cell is not None:  # a clicked cell sets the pair below (before its dropdowns are drawn)
                st.session_state[true_key], st.session_state[pred_key] = cell

        left, right = st.columns([3, 2])
        with left:
            chart = figures.confusion_chart(result.confusion, f"Confusion matrix, {tab_name} ({result.total:,} "
                                            f"{item}s)", classes=classes, item=item)
            st.altair_chart(chart, on_select=pick_cell, selection_mode="cell", key=chart_key, width="stretch")
        with right:
            st.markdown(f"**Recall per {'class' if classes else 'digit'}** (✗: how many it misread)")
            misread = result.confusion.sum(axis=1) - result.confusion.diagonal()
            st.altair_chart(figures.recall_chart(result.recall, misread, classes), width="stretch")
            low, _ = figures.recall_range(result.recall)
            if low > 0:
                st.caption(f"The axis starts at {100 * low:.0f}%, to show the differences between "
                           f"{'classes' if classes else 'digits'}.")
        pick_cols = st.columns(3)
        every = list(range(len(words.classes)))
        true = pick_cols[0].selectbox(f"True {'class' if classes else 'digit'}", every, key=true_key,
                                      format_func=words.label)
        pred = pick_cols[1].selectbox("Read as", every, key=pred_key, format_func=words.label)
        pick_cols[2].caption("Click a cell of the matrix, or choose a pair here.")
        chosen = stats.pair_samples(result.labels, result.predicted, result.confidence, true, pred)
        st.markdown(f"**{len(chosen):,} {item}{'s' if len(chosen) != 1 else ''} with true {words.label(true)} read "
                    f"as {words.label(pred)}**" + (" (first 30, most confident first)" if len(chosen) > 30 else ""))
        if images is not None and len(chosen):
            st.image([figures.digit_picture(images[i]) for i in chosen[:30]],
                     caption=[f"#{i} · {100 * result.confidence[i]:.0f}%" for i in chosen[:30]])
        st.subheader(f"Misread {item}s, most confident mistakes first")
        worst = stats.most_confident_mistakes(result.labels, result.predicted, result.confidence, limit=30)
        if not len(worst):
            st.success(f"No {item} misread.")
        elif images is not None:
            st.image([figures.digit_picture(images[i]) for i in worst],
                     caption=[f"true {words.label(result.labels[i])} → {words.label(result.predicted[i])} "
                              f"({100 * result.confidence[i]:.0f}%)" for i in worst])
            st.caption(f"Each {item} as the model saw it (the normalised {stats.shape_text(images)}), with its true "
                       "label, the model's reading and the model's confidence.")

with tabs["Details"]:
    left, right = st.columns(2)
    with left:
        st.subheader("Hyperparameters")
        if s.hyperparameters:
            st.table(stats.literal_table(s.hyperparameters))  # st.table renders markdown: escaped
        else:
            st.caption("None given in entry.toml.")
        if s.constructor:
            st.subheader("Constructor arguments")
            st.table(stats.literal_table(s.constructor))
    with right:
        st.subheader("Evaluation")
        st.table({"": ["status", "device", "output kind", "seconds", "peak memory", "content hash", "weights hash",
                       "code hash"],
                  "value": [stats.literal(v) for v in (
                      s.status, s.device, s.output_kind or "–", f"{s.seconds:.2f}",
                      f"{s.peak_memory_bytes / 2**20:.0f} MiB" if s.peak_memory_bytes else "–",
                      s.content_hash[:16], s.weights_hash[:16] or "–", s.code_hash[:16] or "–")]})
    if s.error:
        st.subheader("Error")
        st.code(s.error, language=None, wrap_lines=True)
    st.subheader("Evaluation log")
    st.code(s.log or "(the entry printed nothing)", language=None, wrap_lines=True)
    st.subheader("On the guest's digits" if words.is_mnist else f"On {words.secret}")
    code = st.text_input("Your member code", type="password", key="sealed-code") \
        if revealed and not st.session_state.get("organiser") else ""
    sealed, why = views.sealed_view(cache.current_engine(), s.evaluation_id, s.entry_name, revealed,
                                    bool(st.session_state.get("organiser")), code)
    if sealed is None:
        st.caption(why)
    else:
        st.caption(f"{sealed.seconds or 0:.1f} s, peak memory "
                   f"{(sealed.peak_memory_bytes or 0) / 2**20:.0f} MiB")
        if sealed.error:
            st.code(sealed.error, language=None, wrap_lines=True)
        st.code(sealed.log or "(the entry printed nothing)", language=None, wrap_lines=True)

with tabs["Versions"]:
    if view.history is not None and view.history["accuracy"].notna().any():
        st.markdown(f"**{stats.literal(s.display_name)}: accuracy over versions**")
        st.altair_chart(figures.history_chart(view.history, None if words.is_mnist else {
            words.public_kind: words.public, words.secret_kind: words.secret}), width="stretch")
    st.dataframe(view.versions, hide_index=True, width="stretch",
                 column_config={"first seen": st.column_config.DatetimeColumn("first seen (UTC)",
                                                                              format="YYYY-MM-DD HH:mm")})
