"""'What worked': every entry's hyperparameters beside its accuracy, grouped the ways a newcomer asks about.

Pure functions over the newest evaluation of each entry (``harness.store.evaluations.EvalSummary``); no Streamlit.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from harness.scoring.standings import DISQUALIFIED
from harness.store.evaluations import EvalSummary

FACTORS = {
    "optimizer": "Optimizer",
    "epochs": "Epochs",
    "augmented": "Augmentation",
    "arch": "Architecture",
    "batch_size": "Batch size",
}
METRICS = {"mnist": "MNIST test accuracy", "guest": "Guest accuracy"}


def _augmented(hp: dict) -> str | None:
    if "augment" not in hp and "augmentation" not in hp:
        return None
    value = hp.get("augment", hp.get("augmentation"))
    return "with" if value not in (None, False, "", "none", [], ()) else "without"


def frame(summaries: list[EvalSummary], include_guest: bool,
          kinds: tuple[str, str] = ("mnist", "guest")) -> pd.DataFrame:
    """One row per successfully evaluated entry: its knobs and its accuracies (guest only when allowed); column
    ``mnist`` holds the public set's accuracy and ``guest`` the secret one's, whatever the task calls them (``kinds``:
    ``Competition.set_kinds``).

    A disqualified entry (its standing, from ``harness.scoring.standings``) is left out: its score says nothing about
    what worked. Hidden entries never reach here.
    """
    public, secret = kinds
    rows = []
    for s in summaries:
        if s.status != "ok" or public not in s.scores or s.standing == DISQUALIFIED:
            continue
        hp = s.hyperparameters
        row = {"entry": s.display_name, "author": s.author, "params": s.params,
               "mnist": s.scores[public].accuracy,
               "guest": s.scores[secret].accuracy if include_guest and secret in s.scores else None,
               "optimizer": str(hp["optimizer"]).lower() if hp.get("optimizer") else None,
               "epochs": int(hp["epochs"]) if isinstance(hp.get("epochs"), (int, float)) else None,
               "augmented": _augmented(hp),
               "arch": str(hp.get("arch") or hp.get("architecture") or "") or None,
               "batch_size": int(hp["batch_size"]) if isinstance(hp.get("batch_size"), (int, float)) else None}
        rows.append(row)
    columns = ["entry", "author", "params", "mnist", "guest", *FACTORS]
    df = pd.DataFrame(rows, columns=columns)
    if not include_guest:
        df = df.drop(columns="guest")
    return df


def by_factor(df: pd.DataFrame, factor: str, metric: str = "mnist") -> pd.DataFrame:
    """Count, mean, median, best and worst of ``metric`` for each value of ``factor`` (entries without it skipped)."""
    known = df.dropna(subset=[factor, metric])
    if known.empty:
        return pd.DataFrame(columns=[factor, "entries", "mean", "median", "best", "worst"])
    grouped = known.groupby(factor)[metric]
    out = pd.DataFrame({"entries": grouped.size(), "mean": grouped.mean(), "median": grouped.median(),
                        "best": grouped.max(), "worst": grouped.min()}).reset_index()
    return out.sort_values("median", ascending=False, ignore_index=True)


def title(metric: str, factor: str | None = None, titles: dict[str, str] | None = None) -> str:
    """A chart's title: "MNIST test accuracy by optimizer" (``factor`` None: by model size); ``titles``: a task's
    names for the columns ``mnist`` and ``guest`` (:func:`metric_titles`)."""
    return f"{(titles or METRICS)[metric]} by {FACTORS[factor].lower() if factor else 'model size'}"


def metric_titles(public: str | None = None, secret: str | None = None) -> dict[str, str]:
    """The accuracy columns' names: MNIST's, or a task's sets' titles."""
    if public is None:
        return dict(METRICS)
    return {"mnist": f"{public} accuracy", "guest": f"{secret} accuracy"}


ACCURACY_AXIS = alt.Axis(format=".1~%")  # d3's bare "%" prints 51.400000% when the axis holds one value


def box_chart(df: pd.DataFrame, factor: str, metric: str = "mnist") -> alt.Chart:
    """Accuracy by one knob: a box per value, every entry as a dot on top."""
    data = df.dropna(subset=[factor, metric])
    x = alt.X(f"{factor}:N", title=FACTORS[factor], axis=alt.Axis(labelAngle=0))
    y = alt.Y(f"{metric}:Q", title="accuracy (higher is better)", scale=alt.Scale(zero=False),
              axis=ACCURACY_AXIS)
    boxes = alt.Chart(data).mark_boxplot(extent="min-max", opacity=0.5).encode(x=x, y=y)
    dots = alt.Chart(data).mark_circle(size=60, color="black").encode(
        x=x, y=y, tooltip=["entry", "author", alt.Tooltip(f"{metric}:Q", format=".2%")])
    return (boxes + dots).properties(title=title(metric, factor), width=320, height=260)


def size_chart(df: pd.DataFrame, metric: str = "mnist") -> alt.Chart:
    """Accuracy against parameter count (log scale), coloured by architecture ("not given" when unrecorded)."""
    data = df.dropna(subset=["params", metric]).assign(arch=lambda d: d["arch"].fillna("not given"))
    return alt.Chart(data).mark_circle(size=80).encode(
        x=alt.X("params:Q", title="Parameters (log scale)", scale=alt.Scale(type="log")),
        y=alt.Y(f"{metric}:Q", title="accuracy (higher is better)", scale=alt.Scale(zero=False),
                axis=ACCURACY_AXIS),
        color=alt.Color("arch:N", title="Architecture", legend=alt.Legend(orient="bottom")),
        tooltip=["entry", "author", "params", alt.Tooltip(f"{metric}:Q", format=".2%")],
    ).properties(title=title(metric), width=320, height=260)
