"""Server time of the dashboard's first renders with a full-size database, what the board sends to the browser, and
how fast Draw-a-digit answers.

    python benchmarks/dashboard_speed.py [--entries 200] [--evaluations 10] [--mnist 10000] [--repeat 3]
                                         [--only pages,payload,draw] [--draw-repeat 5]

Builds (once, cached under benchmarks/results/) a database of ``entries`` × ``evaluations`` evaluations, each with a
full MNIST test result and a 100-digit guest result (every blob the harness stores), then:

pages    times the script run of the leaderboard page and of an entry page under Streamlit's AppTest with every
         cache cleared first (a cold first render), sealed and revealed. Targets: leaderboard < 1.5 s, entry < 1 s.
payload  the bytes the leaderboard page hands to the browser (the board table's Arrow data, the chart's spec and
         data, all elements together) in its compact view and with "All columns" on, beside its server time.
draw     Draw-a-digit's latency for every committed entry in submissions/ reading one drawing: the warm pool
         (harness.isolation.WarmPool, what the page uses) cold (nothing started: first answer and all answers) and
         warm, against the one-off path in the same run (leaderboard.drawing.predict: a fresh process per entry, one
         after the other, as the page did before). Targets: first answer cold < 3 s, all answers warm < 1 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import insert

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.scoring.metrics import confusion_matrix, precision_recall, wilson_interval
from harness.store import flags
from harness.store.engine import make_engine
from harness.store.schema import Dataset, Entry, EntryVersion, Evaluation, Result, Run, pack, utcnow


def build(path: Path, entries: int, evaluations: int, n_mnist: int, n_guest: int = 100, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    engine = make_engine(str(path))
    labels = {"mnist": rng.integers(0, 10, n_mnist), "guest": rng.integers(0, 10, n_guest)}
    with engine.begin() as conn:
        ids = {}
        for kind in ("mnist", "guest"):
            n = len(labels[kind])
            ids[kind] = conn.execute(insert(Dataset).values(
                kind=kind, content_hash=f"bench-{kind}", size=n, source="benchmark", preprocess_version="bench",
                labels=pack(labels[kind]), files=[f"{d}/g{j:03d}.png" for j, d in enumerate(labels[kind])]
                if kind == "guest" else [], images=pack(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)),
                created_at=utcnow())).inserted_primary_key[0]
        run_id = conn.execute(insert(Run).values(harness_version="bench", torch_version="bench",
                                                 python_version="3", device="cpu", argv=[], status="finished",
                                                 started_at=utcnow())).inserted_primary_key[0]
        start = utcnow() - timedelta(days=10)
        for e in range(entries):
            entry_id = conn.execute(
                insert(Entry).values(name=f"entry-{e:03d}", created_at=start)).inserted_primary_key[0]
            skill = rng.uniform(0.85, 0.995)
            for v in range(evaluations):
                version_id = conn.execute(insert(EntryVersion).values(
                    entry_id=entry_id, content_hash=f"{e:03d}-{v:02d}".ljust(64, "0"), code_hash="c" * 64,
                    weights_hash="w" * 64, weights_bytes=1_000_000, display_name=f"Entry number {e}",
                    author=f"Member {e % 37}", description="benchmark entry",
                    hyperparameters={"lr": 0.001 * (1 + e % 5), "epochs": 1 + v, "optimizer": "adam"},
                    constructor={}, first_seen_at=start + timedelta(hours=e + v))).inserted_primary_key[0]
                failed = e % 50 == 7 and v == evaluations - 1
                eval_id = conn.execute(insert(Evaluation).values(
                    run_id=run_id, version_id=version_id, eval_key=f"{e}-{v}", status="failed" if failed else "ok",
                    error="the entry's process exited with code 1 before it finished." if failed else None,
                    device="cpu", started_at=start + timedelta(hours=e + v), seconds=3.0, params=100_000 + e,
                    images_per_second=5000.0 + e, peak_memory_bytes=2**28, output_kind="logits",
                    log="loading\nrunning\n")).inserted_primary_key[0]
                if failed:
                    continue
                rows = []
                for kind in ("mnist", "guest"):
                    y = labels[kind]
                    acc = min(skill + 0.002 * v, 0.999) if kind == "mnist" else skill - 0.2
                    wrong = rng.random(len(y)) > acc
                    pred = np.where(wrong, (y + rng.integers(1, 10, len(y))) % 10, y)
                    probs = rng.dirichlet(np.ones(10), len(y)).astype(np.float32)
                    probs[np.arange(len(y)), pred] += 1.0
                    probs /= probs.sum(1, keepdims=True)
                    cm = confusion_matrix(y, pred)
                    precision, recall = precision_recall(cm)
                    correct = int((pred == y).sum())
                    lo, hi = wilson_interval(correct, len(y))
                    rows.append(dict(evaluation_id=eval_id, dataset_id=ids[kind], correct=correct, total=len(y),
                                     accuracy=correct / len(y), ci_low=lo, ci_high=hi, log_loss=0.1,
                                     confusion=cm.tolist(), precision=[float(x) for x in np.nan_to_num(precision)],
                                     recall=[float(x) for x in np.nan_to_num(recall)],
                                     predicted=pack(pred.astype(np.uint8)), confidence=pack(probs.max(1)),
                                     probabilities=pack(probs.astype(np.float16))))
                conn.execute(insert(Result), rows)
    engine.dispose()


def time_page(app: str, page: str | None, repeat: int, **query) -> list[float]:
    import streamlit as st
    from streamlit.testing.v1 import AppTest
    times = []
    for _ in range(repeat):
        at = AppTest.from_file(app, default_timeout=120)
        if page:
            at.run()  # the default page first, then switch: AppTest needs one run to know the pages
            at.switch_page(page)
            at.query_params.update(query)
        st.cache_data.clear()
        st.cache_resource.clear()
        started = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - started)
        assert not at.exception, [e.value for e in at.exception]
    return times


def _leaf_protos(at) -> list:
    """The protos of every element a page run produced (what goes to the browser, blocks left out)."""
    found, stack = [], [at._tree]
    while stack:
        node = stack.pop()
        children = getattr(node, "children", None)
        if children:
            stack.extend(children.values())
        elif getattr(node, "proto", None) is not None:
            found.append(node.proto)
    return found


def _sizes(at) -> dict[str, int]:
    table = at.dataframe[0].proto
    charts = [c.proto for c in at.get("vega_lite_chart")]
    return {"table": table.ByteSize(), "table rows": len(at.dataframe[0].value),
            "table columns": len(at.dataframe[0].value.columns), "charts": sum(c.ByteSize() for c in charts),
            "page": sum(p.ByteSize() for p in _leaf_protos(at))}


def board_payload(app: str) -> list[tuple[str, dict[str, int], float]]:
    """What the leaderboard page sends in its compact view and with every column, and each run's server time."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(app, default_timeout=120)
    st.cache_data.clear()
    st.cache_resource.clear()
    started = time.perf_counter()
    at.run()
    rows = [("compact (default)", _sizes(at), time.perf_counter() - started)]
    toggle = next(t for t in at.toggle if t.label == "All columns")
    started = time.perf_counter()
    toggle.set_value(True).run()
    rows.append(("all columns", _sizes(at), time.perf_counter() - started))
    assert not at.exception, [e.value for e in at.exception]
    return rows


def drawn_seven():
    """A "7" drawn on a 280×280 white canvas with an 18-pixel pen, normalised as the page does."""
    from PIL import Image, ImageDraw

    from leaderboard import drawing
    canvas = Image.new("RGBA", (280, 280), (255, 255, 255, 255))
    pen = ImageDraw.Draw(canvas)
    pen.line([(84, 70), (196, 70), (126, 224)], fill=(0, 0, 0, 255), width=18, joint="curve")
    return drawing.normalise_drawing(np.asarray(canvas))


def draw_latency(repeat: int) -> tuple[list[tuple[str, float, str]], int, list[str]]:
    """Seconds for every committed entry to read one drawing: the one-off path (cold, then warm: the fork server
    already running) and the warm pool (cold: first and all answers; warm: median of ``repeat`` drawings)."""
    from harness.isolation import WarmPool
    from leaderboard import drawing
    entries = drawing.entries_on_disk(REPO / "submissions")
    digit = drawn_seven()
    images = drawing.model_input(digit)
    rows = []
    pool = WarmPool(drawing.LIMITS, cap=max(len(entries), 1))
    try:
        started, first = time.perf_counter(), None
        readings = []
        for entry, ran in pool.ask_all(entries, images):
            first = first or time.perf_counter() - started
            readings.append(drawing.reading(entry, ran))
        every = time.perf_counter() - started
        failed = [r.error for r in readings if r.error]
        rows.append(("warm pool, cold: first answer", first, "< 3 s"))
        rows.append(("warm pool, cold: all answers", every, ""))
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            failed += [r.error for _, r in pool.ask_all(entries, images) if r.status != "ok"]
            times.append(time.perf_counter() - started)
        warm = statistics.median(times)
        rows.append((f"warm pool, warm: all answers (median of {repeat}, {min(times):.3f}–{max(times):.3f})", warm,
                     "< 1 s"))
    finally:
        pool.close()
    for label in ("one-off processes, cold (as before): all answers", "one-off processes, warm: all answers"):
        started = time.perf_counter()
        failed += [r.error for r in (drawing.predict(e, digit) for e in entries) if r.error]
        rows.append((label, time.perf_counter() - started, ""))
    club = drawing.consensus(readings)
    said = [f"  the drawing reads {club[0]} for {club[1]} of {club[2]} entries that answered" if club else
            "  no entry read the drawing"] + [f"  failed: {error}" for error in sorted(set(failed))]
    return rows, len(entries), said


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--entries", type=int, default=200)
    p.add_argument("--evaluations", type=int, default=10)
    p.add_argument("--mnist", type=int, default=10000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--only", default="pages,payload,draw", help="comma-separated: pages, payload, draw")
    p.add_argument("--draw-repeat", type=int, default=5, help="drawings read by the warm pool once warm")
    args = p.parse_args()
    parts = {part.strip() for part in args.only.split(",")}
    unknown = parts - {"pages", "payload", "draw"}
    if unknown:
        p.error(f"unknown part {', '.join(sorted(unknown))}; choose among pages, payload, draw.")
    ok = True
    if "draw" in parts:
        ok &= report_draw(args.draw_repeat)
    if not parts & {"pages", "payload"}:
        return 0 if ok else 1
    folder = REPO / "benchmarks" / "results"
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / f"dashboard-{args.entries}x{args.evaluations}-{args.mnist}.db"
    if not db.exists():
        t = time.perf_counter()
        build(db.with_suffix(".tmp"), args.entries, args.evaluations, args.mnist)
        db.with_suffix(".tmp").rename(db)
        print(f"built {db.name} ({db.stat().st_size / 2**20:.0f} MiB) in {time.perf_counter() - t:.0f} s")
    os.environ["LEADERBOARD_DB"] = str(db)
    os.environ.pop("LEADERBOARD_ADMIN_PASSWORD", None)
    os.environ["LEADERBOARD_EVALUATE"] = "off"  # the pages are timed, not a watcher scoring beside them
    app = str(REPO / "leaderboard" / "app.py")
    engine = make_engine(str(db))
    if "payload" in parts:
        print(f"\nThe leaderboard page's payload with {args.entries} entries (bytes sent to the browser; server time "
              "of the run, cold caches for the first)")
        print(f"  {'view':18s} {'table':>10s} {'rows×cols':>10s} {'charts':>10s} {'whole page':>11s} {'server':>8s}")
        for view, size, seconds in board_payload(app):
            print(f"  {view:18s} {size['table'] / 1024:8.1f} kB {size['table rows']:>5d}×{size['table columns']:<4d} "
                  f"{size['charts'] / 1024:8.1f} kB {size['page'] / 1024:9.1f} kB {seconds:7.3f} s")
    if "pages" not in parts:
        return 0 if ok else 1
    print(f"\n{args.entries} entries × {args.evaluations} evaluations, MNIST {args.mnist} + guest 100; "
          f"cold caches; median of {args.repeat} (min–max), seconds of server time")
    for revealed in (False, True):
        flags.set_flag(engine, flags.GUEST_REVEALED, "true" if revealed else "false")
        for name, page, target, query in (("leaderboard", None, 1.5, {}),
                                          ("entry page", "screens/entry.py", 1.0, {"entry": "entry-042"})):
            times = time_page(app, page, args.repeat, **query)
            med = statistics.median(times)
            ok &= med < target
            print(f"  {'revealed' if revealed else 'sealed  '}  {name:12s} {med:6.3f} s ({min(times):.3f}–"
                  f"{max(times):.3f})  target < {target} s  {'ok' if med < target else 'TOO SLOW'}")
    flags.set_flag(engine, flags.GUEST_REVEALED, "false")
    return 0 if ok else 1


def report_draw(repeat: int) -> bool:
    rows, count, said = draw_latency(repeat)
    print(f"Draw a digit: {count} committed entries (submissions/) read one drawing; seconds, this run")
    ok = True
    for label, seconds, target in rows:
        limit = float(target.split()[1]) if target else None
        good = limit is None or seconds < limit
        ok &= good
        verdict = "" if limit is None else ("ok" if good else "TOO SLOW")
        print(f"  {label:60s} {seconds:7.3f} s  {('target ' + target) if target else '':14s}{verdict}")
    first, _, warm, before, _ = (seconds for _, seconds, _ in rows)
    print(*said, sep="\n")
    print(f"  all answers, warm pool warm vs one-off cold (as before): {before / warm:.0f}× faster; first answer, "
          f"warm pool cold vs all answers one-off cold: {before / first:.1f}× sooner")
    return ok


if __name__ == "__main__":
    sys.exit(main())
