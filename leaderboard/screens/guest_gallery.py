"""After the reveal: every guest digit as written and as normalised, hardest first, with the club's consensus."""

import streamlit as st

from leaderboard import cache, figures, stats, views

settings = cache.settings()
words = cache.names()
mnist, item = words.is_mnist, words.item
st.title("✍️ Guest gallery" if mnist else f"✍️ {words.secret}")
if not cache.revealed():
    st.info("🔒 The guest's digits are sealed until the reveal. Come back when the organisers open them." if mnist
            else f"🔒 {words.secret} are sealed until the reveal. Come back when the organisers open them.")
    st.stop()

view = cache.guest(settings.db_url, cache.rules())
if view is None:
    st.warning("No guest digits have been evaluated yet." if mnist else f"No {item}s of {words.secret} have been "
               "evaluated yet.")
    st.stop()

c = view.consensus
st.markdown(f"The {item}s: {stats.secret_set_text(view.dataset, words)}.")
n_entries = len(view.entries)
cols = st.columns(3)
cols[0].metric("Guest digits" if mnist else words.secret, f"{len(c):,}")
cols[1].metric("Entries counted", f"{n_entries:,}")
cols[2].metric("Read right by every entry", f"{int((c['right'] == n_entries).sum()):,}" if n_entries else "–")
st.caption(f"Hardest {item}s first: fewest entries read them right. Left: the {item} as written; right: as the "
           f"models saw it (normalised {stats.shape_text(view.images) if view.images is not None else '28×28'}). "
           "'Consensus' is the most common reading and the share of entries that gave it.")

per_row = st.select_slider(f"{item.capitalize()}s per row", options=[4, 5, 6, 8], value=5)
sizes = [v for v in (24, 48, 96, 200) if v < len(c)] + [len(c)]
limit = st.select_slider("Show", options=sizes, value=min(48, len(c)) if min(48, len(c)) in sizes else len(c),
                         format_func=lambda v: "all" if v == len(c) else f"{v:,}")
rows = c.head(limit).to_dict("records")
for start in range(0, len(rows), per_row):
    columns = st.columns(per_row)
    for column, d in zip(columns, rows[start:start + per_row], strict=False):
        i = int(d["index"])
        with column.container(border=True):
            original = views.original_picture(settings.mystery, view.dataset.source, view.files[i]) \
                if i < len(view.files) else None
            pictures = ([str(original)] if original else []) + (
                [figures.digit_picture(view.images[i], 2)] if view.images is not None else [])
            st.image(pictures, width=64)
            st.markdown(f"**{words.label(d['label'])}** · {d['right']:,}/{d['entries']:,} right  \n"
                        f"consensus {words.label(d['consensus'])} ({100 * d['consensus_share']:.0f}%)")
            st.caption(stats.literal(view.files[i]) if i < len(view.files) else f"#{i}")
