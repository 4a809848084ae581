"""What worked: each entry's knobs beside its accuracy, grouped by optimizer, epochs, augmentation and size."""

import streamlit as st

from harness.scoring import insights
from leaderboard import cache, figures, stats

url = cache.settings().db_url
words = cache.names()
revealed = cache.revealed()
df = cache.insights_frame(url, revealed, cache.rules())
st.title("🧪 What worked")
st.caption("Every successfully evaluated entry's recorded hyperparameters (entry.toml) beside its accuracy. "
           "Entries that recorded no value for a knob are left out of that chart. Few entries per group means "
           "little evidence: look at the dots, not only the boxes.")
if df.empty:
    st.info("No evaluated entries yet: run `python -m harness.evaluate`.")
    st.stop()
metrics = {"mnist": words.public} | ({"guest": words.secret} if revealed and df["guest"].notna().any() else {})
metric = st.radio("Accuracy on", list(metrics), format_func=metrics.get, horizontal=True)
if not revealed:
    st.caption("🔒 Guest results are sealed until the reveal; MNIST only." if words.is_mnist else
               f"🔒 Results on {words.secret} are sealed until the reveal; {words.public} only.")
if metric == "guest":
    st.caption(f"{words.secret_score} accuracy is on "
               f"{stats.secret_set_text(cache.board(url, revealed).datasets[words.secret_kind], words)}.")
titles = {"mnist": f"{words.public} accuracy", "guest": f"{words.secret_score} accuracy"}
shown = None if words.is_mnist else titles
st.markdown(f"**{insights.title(metric, titles=shown)}**")  # titles outside the charts: they wrap on a phone
st.altair_chart(figures.fill_column(insights.size_chart(df, metric), height=380), width="stretch")
factors = [f for f in insights.FACTORS if df[f].notna().any()]
for row in range(0, len(factors), 2):
    for column, factor in zip(st.columns(2), factors[row:row + 2], strict=False):
        column.markdown(f"**{insights.title(metric, factor, titles=shown)}**")
        column.altair_chart(figures.fill_column(insights.box_chart(df, factor, metric)), width="stretch")
        # Five columns, the median (the boxes' middle line) without the mean: all in a phone's 346 px, none cut.
        column.dataframe(insights.by_factor(df, factor, metric).drop(columns="mean"), hide_index=True,
                         width="stretch", column_config={c: st.column_config.NumberColumn(format="percent")
                                                         for c in ("median", "best", "worst")})
st.download_button("Download as CSV", df.to_csv(index=False), "what_worked.csv", "text/csv")
