"""Altair charts and digit pictures for the dashboard: plain functions of arrays and frames."""

from __future__ import annotations

import json

import altair as alt
import numpy as np
import pandas as pd

from harness.data.task import TASK

DIGITS = list(range(TASK.num_classes))  # the task's labels, 0-9 for digits


def confusion_frame(confusion: np.ndarray, classes: list[str] | None = None) -> pd.DataFrame:
    """Long form of a confusion matrix: one row per (true, predicted) cell with its count, row share and the count
    as the cell shows it (``count_label``: empty for an empty cell); with ``classes``, the two classes' names too
    (``true_name``, ``predicted_name``)."""
    confusion = np.asarray(confusion, dtype=np.int64)
    totals = confusion.sum(axis=1, keepdims=True)
    share = np.divide(confusion, totals, out=np.zeros(confusion.shape), where=totals > 0)
    labels = list(range(len(confusion)))
    t, p = np.meshgrid(labels, labels, indexing="ij")
    counts = confusion.ravel()
    df = pd.DataFrame({"true": t.ravel(), "predicted": p.ravel(), "count": counts, "share": share.ravel(),
                       "correct": (t == p).ravel(), "count_label": [f"{c:,}" if c else "" for c in counts]})
    if classes is not None:
        df["true_name"] = [classes[i] for i in df["true"]]
        df["predicted_name"] = [classes[i] for i in df["predicted"]]
    return df


def class_axis(classes: list[str] | None, **kwargs) -> alt.Axis:
    """An axis over class indices that writes each class's name (``classes``), or the index itself when None."""
    if classes is not None:
        kwargs["labelExpr"] = f"{json.dumps(list(classes))}[datum.value]"
    return alt.Axis(**kwargs)


# The matrix's cell text shrinks with the chart (a phone's 30-pixel cells hold "1,135" at 8 px) and never grows past 12.
CELL_FONT = "clamp(width / 34, 7, 12)"


EDGE = {"left": 6, "right": 6, "top": 6, "bottom": 6}  # room for a title's or an axis title's glyphs at the edge


def confusion_chart(confusion: np.ndarray, title: str, height: int = 540, classes: list[str] | None = None,
                    item: str = "digit") -> alt.LayerChart:
    """Heatmap with counts, as wide as its column. The diagonal (read right) is blue by its share of the true digit;
    the errors are orange on their own scale, from one misreading to the most frequent, so that an 11-count error
    stands out instead of looking like an empty cell. Empty cells are white. With ``classes`` the axes and tooltips
    name the classes (a click still selects the cell's indices); ``item`` is what the true label is of."""
    df = confusion_frame(confusion, classes)
    worst = int(df.loc[~df["correct"], "count"].max()) if (~df["correct"]).any() else 0
    pick = alt.selection_point(name="cell", fields=["true", "predicted"], on="click", clear="dblclick")
    named = classes is not None
    base = alt.Chart(df, title=alt.Title(title, anchor="start")).encode(
        x=alt.X("predicted:O", title="read as", axis=class_axis(classes, labelAngle=0, orient="top")),
        y=alt.Y("true:O", title=f"true {'class' if named else item}", axis=class_axis(classes)),
        tooltip=[alt.Tooltip("true_name:N" if named else "true:O", title="true"),
                 alt.Tooltip("predicted_name:N" if named else "predicted:O", title="read as"),
                 alt.Tooltip("count:Q", format=","), alt.Tooltip("share:Q", title=f"share of true {item}",
                                                                  format=".1%")])
    frame = base.mark_rect(stroke="#e0e0e0", fill="white").add_params(pick)
    right = base.transform_filter("datum.correct").mark_rect().encode(
        color=alt.Color("share:Q", title="read right (share)", scale=alt.Scale(scheme="blues", domain=[0, 1]),
                        legend=alt.Legend(format="%", orient="bottom", gradientLength=120)))
    wrong = base.transform_filter("!datum.correct && datum.count > 0").mark_rect().encode(
        color=alt.Color("count:Q", title="misread (count)", scale=alt.Scale(scheme="oranges",
                                                                            domain=[0, max(worst, 1)]),
                        legend=alt.Legend(orient="bottom", gradientLength=120, tickMinStep=1)))
    outline = base.mark_rect(fillOpacity=0, stroke="#111").encode(  # the clicked cell, framed
        strokeWidth=alt.condition(alt.Predicate(param=pick.name, empty=False), alt.value(3), alt.value(0)))
    text = base.mark_text(fontSize=alt.ExprRef(CELL_FONT)).encode(
        text=alt.Text("count_label:N"),
        color=alt.condition("(datum.correct && datum.share > 0.5) || (!datum.correct && datum.count > "
                            f"{worst / 2})", alt.value("white"), alt.value("#222")))
    return alt.layer(frame, right, wrong, outline, text).resolve_scale(color="independent").properties(
        width="container", height=height, padding=EDGE)


def recall_range(recall: np.ndarray) -> tuple[float, float]:
    """The recall axis: from a little below the weakest digit (a multiple of 5 points, 0 at most) to 100%, so
    that 97% and 99% look different."""
    low = float(np.nanmin(recall)) if len(recall) else 0.0
    return max(0.0, np.floor(low * 20 + 1e-9) / 20 - 0.05), 1.0


def recall_chart(recall: np.ndarray, misread: np.ndarray | None = None,
                 classes: list[str] | None = None) -> alt.LayerChart:
    """Recall per true digit on an axis zoomed to ``recall_range``, each bar labelled with how many digits it
    misread (``misread``); with ``classes``, the axis names the classes."""
    recall = np.asarray(recall, dtype=float)
    misread = np.zeros(len(recall), int) if misread is None else np.asarray(misread, dtype=int)
    df = pd.DataFrame({"digit": list(range(len(recall))), "recall": recall, "misread": misread,
                       "label": [f"{m:,} ✗" if m else "" for m in misread]})
    low, high = recall_range(recall)
    base = alt.Chart(df).encode(
        x=alt.X("digit:O", title="true class" if classes else "true digit",
                axis=class_axis(classes, labelAngle=0)),
        y=alt.Y("recall:Q", title="recall (share read right)", scale=alt.Scale(domain=[low, high], clamp=True),
                axis=alt.Axis(format=".1~%")),
        tooltip=[alt.Tooltip("digit:O"), alt.Tooltip("recall:Q", format=".2%"),
                 alt.Tooltip("misread:Q", title="misread")])
    bars = base.mark_bar(clip=True)
    labels = base.mark_text(dy=-6, fontSize=10, color="#b34700").encode(text="label:N")
    return (bars + labels).properties(height=220, width="container", padding=EDGE)


LEVEL, BEHIND = "cannot be separated from the leader", "behind the leader"
ROW_PX = 40  # the interval chart's row: the name, and its interval under it


def interval_chart(board: pd.DataFrame, low: str, high: str, value: str, top: int | None = None) -> alt.LayerChart:
    """The first ``top`` ranked entries' accuracy as a dot on its 95% interval, in rank order; green for those the
    digits cannot separate from the leader (``with_leader``), grey for the rest."""
    df = board.dropna(subset=[value, low, high])
    df = (df if top is None else df.head(top)).copy()
    df[value] = df[value].astype(float)
    df["label"] = [f"{int(r) if pd.notna(r) else '–'}. {n}"
                   for r, n in zip(df["rank"], df["display_name"], strict=True)]
    df["versus"] = [LEVEL if w is True else BEHIND for w in df["with_leader"]]
    order = df["label"].tolist()
    # Each name on a line of its own above its interval, as wide as the chart (not beside an axis, where a phone
    # would cut it), so that the plot, its axis title and the legend (its two entries one under the other) keep the
    # whole width.
    y = alt.Y("label:N", sort=order, title=None, axis=None, scale=alt.Scale(paddingInner=0, paddingOuter=0))
    colour = alt.Color("versus:N", scale=alt.Scale(domain=[LEVEL, BEHIND], range=["#2e7d32", "#9e9e9e"]),
                       legend=alt.Legend(title=None, orient="top", direction="vertical", labelLimit=0))
    x = alt.X(f"{low}:Q", title="accuracy, 95% interval (higher is better)", axis=alt.Axis(format="%", labelFlush=True),
              scale=alt.Scale(zero=False))
    rule = alt.Chart(df).mark_rule(strokeWidth=6, opacity=0.35, yOffset=ROW_PX / 4).encode(
        y=y, x=x, x2=f"{high}:Q", color=colour)
    dot = alt.Chart(df).mark_point(filled=True, size=70, yOffset=ROW_PX / 4).encode(
        y=y, x=f"{value}:Q", color=colour,
        tooltip=[alt.Tooltip("display_name:N", title="entry"),
                 alt.Tooltip(f"{value}:Q", title="accuracy", format=".1%"),
                 alt.Tooltip(f"{low}:Q", title="95% low", format=".1%"),
                 alt.Tooltip(f"{high}:Q", title="95% high", format=".1%"), alt.Tooltip("versus:N", title="vs #1")])
    name = alt.Chart(df).mark_text(align="left", baseline="middle", yOffset=-ROW_PX / 5, fontSize=12, limit=0).encode(
        y=y, x=alt.value(0), text="label:N")
    # ROW_PX pixels a row, as wide as the page: a height in pixels (not a per-row step, which Vega would not fit and
    # would say so in the console) and only the width fitted.
    return (rule + dot + name).properties(height=ROW_PX * len(df),
                                          autosize=alt.AutoSizeParams(type="fit-x", contains="padding"))


def history_chart(history: pd.DataFrame, titles: dict[str, str] | None = None) -> alt.Chart:
    """Accuracy of each evaluation, by version, one line per dataset (``titles``: each stored kind's name)."""
    df = history.dropna(subset=["accuracy"]).copy()
    df["set"] = df["kind"].map(titles or {"mnist": "MNIST test", "guest": "guest digits"})
    return alt.Chart(df).mark_line(point=True).encode(
        x=alt.X("version:O", title="version", axis=alt.Axis(labelAngle=0)),
        y=alt.Y("accuracy:Q", title="accuracy", axis=alt.Axis(format=".2~%"), scale=alt.Scale(zero=False)),
        color=alt.Color("set:N", title="dataset"),
        tooltip=["version", "set", alt.Tooltip("accuracy:Q", format=".2%"), "started_at"]).properties(height=220)


def fill_column(chart: alt.TopLevelMixin, height: int = 300) -> alt.TopLevelMixin:
    """A chart as wide as its column, ``height`` pixels tall, without a title of its own (the page writes it above,
    where it wraps on a phone instead of being clipped)."""
    return chart.properties(title="", width="container", height=height,
                            padding=EDGE)


def digit_picture(image: np.ndarray, scale: int = 3) -> np.ndarray:
    """A picture of a set (uint8 or float in [0, 1]) enlarged ``scale`` times with crisp pixels, as uint8: a grey
    [H, W] one stays [H·scale, W·scale]; a colour one as the sets store it, [C, H, W] with C = 3 (or 1), becomes
    [H·scale, W·scale, 3] (or grey), the layout an image viewer takes."""
    image = np.asarray(image)
    if image.ndim == 3:
        if image.shape[0] not in (1, 3):
            raise ValueError(f"a picture of shape {image.shape} is neither grey [H, W] nor [C, H, W] with 1 or 3 "
                             "channels; pass one image of the set.")
        image = image[0] if image.shape[0] == 1 else np.moveaxis(image, 0, -1)
    elif image.ndim != 2:
        raise ValueError(f"a picture of shape {image.shape} is neither grey [H, W] nor [C, H, W]; pass one image "
                         "of the set.")
    if image.dtype != np.uint8:
        image = np.clip(np.rint(image.astype(np.float64) * 255), 0, 255).astype(np.uint8)
    return image.repeat(scale, axis=0).repeat(scale, axis=1)
