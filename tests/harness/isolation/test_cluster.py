"""Running entries on a Dask cluster (``harness.isolation.cluster``): the same predictions as a local run, a worker
that dies mid-entry, bad addresses. The cluster is a LocalCluster of worker processes, always closed."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from harness import evaluate, runner
from harness.entries.discovery import load_entry
from harness.errors import HarnessError
from harness.isolation import cluster
from harness.store.engine import make_engine
from harness.store.schema import Entry as EntryRow, EntryVersion, Evaluation, Result
from tests.entries import class_means, template_predictions, template_weights, write_entry

pytestmark = pytest.mark.slow

distributed = pytest.importorskip("distributed")
import dask  # noqa: E402  (installed with distributed)

KILLS = cluster._KILL_MARKER_ENV


@pytest.fixture(scope="module")
def kills(tmp_path_factory):
    """The folder where a test asks a worker to kill itself on an entry (set before the workers start)."""
    folder = tmp_path_factory.mktemp("kills")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(KILLS, str(folder))
        yield folder


@pytest.fixture(scope="module")
def scheduler(kills):
    """A running scheduler with two worker processes, reached at tcp://… as a club's would be."""
    with dask.config.set(cluster.WORKER_CONFIG):
        local = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                         worker_dashboard_address=":0", silence_logs=40)
        try:
            yield local.scheduler_address
        finally:
            local.close(timeout=30)


@pytest.fixture()
def entries(tmp_path, means, mnist_dir):
    from harness.data import mnist
    train = mnist.load_split(mnist_dir, "train", allow_download=False)
    folder = tmp_path / "subs"
    write_entry(folder, "strong", weights=template_weights(means))
    write_entry(folder, "weak", weights=template_weights(class_means(train.images[:30], train.labels[:30])))
    write_entry(folder, "broken", weights={})
    return [load_entry(folder / name) for name in ("strong", "weak", "broken")]


def score(db, entries, datasets, cluster_address=None):
    engine = make_engine(str(db))
    options = runner.Options(runner.Limits(device="cpu", timeout=120, batch_size=64), cluster=cluster_address)
    summary = runner.run(engine, entries, datasets, options, argv=[])
    return engine, summary


def stored(engine) -> dict[str, tuple]:
    """Each entry's stored status, error, parameter count, result blobs, sandboxing and device."""
    with Session(engine) as session:
        rows = session.execute(
            select(EntryRow.name, Evaluation.status, Evaluation.error, Evaluation.params, Result.predicted,
                   Result.probabilities, Evaluation.sandboxed, Evaluation.device)
            .join(EntryVersion, EntryVersion.entry_id == EntryRow.id)
            .join(Evaluation, Evaluation.version_id == EntryVersion.id)
            .outerjoin(Result, Result.evaluation_id == Evaluation.id)).all()
    return {row[0]: tuple(row[1:]) for row in rows}


def same_as(here: dict[str, tuple], there: dict[str, tuple]) -> None:
    """The same stored evaluations: status, error, parameters, predicted labels byte for byte, sandboxing and device
    equal; probabilities equal to float16 storage. Every call of an entry draws its own secret order, so its images
    meet different batch-mates and float sums can differ in the last bits (measured up to 1.8e-7), which can move a
    float16 rounding; never a predicted label but at an exact tie."""
    import io

    import numpy as np
    assert here.keys() == there.keys()
    for name in here:
        a, b = here[name], there[name]
        assert a[:4] + a[5:] == b[:4] + b[5:], name
        if a[4] is not None or b[4] is not None:
            pa, pb = (np.load(io.BytesIO(x)).astype(np.float32) for x in (a[4], b[4]))
            np.testing.assert_allclose(pa, pb, atol=1e-3, err_msg=name)


def evaluations(engine) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(Evaluation))


def test_a_cluster_stores_the_same_predictions_as_a_local_run_byte_for_byte(tmp_path, entries, small_mnist, scheduler,
                                                                            means, db_url):
    local, _ = score(tmp_path / "local.db", entries, [small_mnist])
    remote, summary = score(db_url, entries, [small_mnist], scheduler)  # SQLite, then PostgreSQL, written from threads
    assert summary.outcome == {"strong": "evaluated", "weak": "evaluated", "broken": "failed"}
    here, there = stored(local), stored(remote)
    same_as(here, there)
    assert there["strong"][0] == "ok" and there["strong"][2] == 7840  # counted on the host, from the weights file
    import io

    import numpy as np
    predicted = np.load(io.BytesIO(there["strong"][3]))
    np.testing.assert_array_equal(predicted, template_predictions(small_mnist.images, means))
    assert "weights" in there["broken"][1] or "fc.weight" in there["broken"][1]  # the local run's sentence, as is


def test_an_entry_whose_worker_dies_is_retried_once_on_another_and_stored_once(tmp_path, entries, small_mnist,
                                                                               scheduler, kills):
    (kills / "weak").write_text("1")
    engine, summary = score(tmp_path / "lb.db", entries[:2], [small_mnist], scheduler)
    assert not (kills / "weak").exists()  # the first attempt did die
    assert summary.outcome == {"strong": "evaluated", "weak": "evaluated"}
    local, _ = score(tmp_path / "local.db", entries[:2], [small_mnist])
    same_as(stored(engine), stored(local))
    assert evaluations(engine) == 2


def test_an_entry_whose_worker_dies_twice_fails_with_one_sentence_and_the_run_goes_on(tmp_path, entries, small_mnist,
                                                                                      scheduler, kills):
    (kills / "weak").write_text("2")
    engine, summary = score(tmp_path / "lb.db", entries[:2], [small_mnist], scheduler)
    assert summary.outcome == {"strong": "evaluated", "weak": "failed"}
    rows = stored(engine)
    assert rows["weak"][:2] == ("failed", "a worker of the cluster died while running the entry, on each of 2 tries; "
                                "the entry was not scored: look for a worker that runs out of memory or is stopped.")
    assert rows["strong"][0] == "ok"
    assert evaluations(engine) == 2


def test_the_command_runs_on_a_local_cluster_of_processes(tmp_path, entries, mnist_dir, capsys):
    args = ["--submissions", str(entries[0].folder.parent), "--mnist-dir", str(mnist_dir), "--mystery",
            str(tmp_path / "none"), "--device", "cpu", "--only", "strong", "--batch-size", "64"]
    assert evaluate.main(args + ["--db", str(tmp_path / "lb.db"), "--cluster", "local:1"]) == 0
    remote = stored(make_engine(str(tmp_path / "lb.db")))
    assert evaluate.main(args + ["--db", str(tmp_path / "local.db")]) == 0
    same_as(remote, stored(make_engine(str(tmp_path / "local.db"))))
    assert remote["strong"][0] == "ok"


@pytest.mark.parametrize("address, sentence", [
    ("local:0", "--cluster local:0 asks for 0 workers; use between 1 and 64."),
    ("localhost:8786", "--cluster 'localhost:8786' is not a cluster address; use local:N (N worker processes on this "
                       "machine), tcp://HOST:8786 (a running Dask scheduler) or tls://HOST:8786 (the same over TLS)."),
])
def test_a_bad_address_is_one_sentence_from_the_command(tmp_path, entries, mnist_dir, capsys, address, sentence):
    args = ["--submissions", str(entries[0].folder.parent), "--mnist-dir", str(mnist_dir), "--db",
            str(tmp_path / "lb.db"), "--cluster", address]
    assert evaluate.main(args) == 2
    assert capsys.readouterr().out.strip() == f"error: {sentence}"


def test_the_cluster_address_defaults_to_the_environment(monkeypatch):
    monkeypatch.setenv(cluster.ENV_ADDRESS, "tcp://10.0.0.5:8786")
    assert evaluate.parser().parse_args([]).cluster == "tcp://10.0.0.5:8786"
    monkeypatch.delenv(cluster.ENV_ADDRESS)
    assert evaluate.parser().parse_args([]).cluster is None


def test_tls_needs_the_three_certificate_files(tmp_path):
    (tmp_path / "ca.pem").write_text("x")
    with pytest.raises(HarnessError) as info:
        cluster.security(str(tmp_path))
    assert str(info.value) == (f"$LEADERBOARD_CLUSTER_TLS_DIR ({tmp_path}) lacks cert.pem, key.pem; put the cluster's "
                               "CA certificate in ca.pem and this machine's certificate and key in cert.pem and "
                               "key.pem.")
    with pytest.raises(HarnessError, match=r"set \$LEADERBOARD_CLUSTER_TLS_DIR"):
        cluster.security(None)


def test_an_unreachable_scheduler_is_one_sentence(monkeypatch):
    monkeypatch.setattr(cluster, "CONNECT_SECONDS", 2.0)
    with (pytest.raises(HarnessError, match=r"^cannot reach the Dask scheduler at tcp://127\.0\.0\.1:9 "),
          cluster.connect("tcp://127.0.0.1:9")):
        pass


def test_a_worker_with_another_harness_version_is_refused_in_one_sentence(scheduler, monkeypatch):
    import harness
    real = harness.__version__
    monkeypatch.setattr(harness, "__version__", "0.0.1")  # this process only: the workers keep the real one
    with pytest.raises(HarnessError) as info, cluster.connect(scheduler):
        pass
    assert str(info.value).startswith("the cluster's worker tcp://127.0.0.1:")
    assert str(info.value).endswith(f" runs harness {real}, this machine 0.0.1; install the same version on every "
                                    f"worker of {scheduler} and restart them.")


def test_the_shared_sets_are_scattered_to_the_workers_once_not_sent_with_every_entry(entries, mnist_test, scheduler,
                                                                                     means):
    """Two entries on the whole MNIST test set: its 7.8 MB of images go to the workers once, in blocks, with no
    warning about a large task; each entry's own changed copies (new blocks) travel once each; the outputs are the
    entry's as a local run computes them."""
    import warnings

    import numpy as np

    from harness.isolation import Limits, predict

    limits = Limits(timeout=120, device="cpu", batch_size=64)
    mnist = mnist_test.images
    with cluster.connect(scheduler) as pool, warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        first = pool.predict(entries[0], {"mnist": mnist}, limits)
        assert pool.scattered_bytes == mnist.nbytes  # 10 blocks, the last one short
        done_here = []  # the caller's own work (keeping a new version's files) is done here, once
        second = pool.predict(entries[1], {"mnist": mnist}, limits, while_loading=lambda: done_here.append(1))
        assert done_here == [1]
        assert pool.scattered_bytes == mnist.nbytes  # nothing new: the blocks were on the workers already
        copies = mnist[:1000] ^ 1
        third = pool.predict(entries[0], {"mnist": np.concatenate([mnist, copies])}, limits)
        # New: the blocks from MNIST's last whole block on (rows 9,216 to 11,000); the nine before were there already
        assert pool.scattered_bytes == mnist.nbytes + (len(mnist) + len(copies) - 9 * cluster.BLOCK_ROWS) * 28 * 28
    assert not [w for w in said if "large graph" in str(w.message)], [str(w.message) for w in said]
    assert first.status == second.status == third.status == "ok"
    here = predict(entries[0], {"mnist": mnist}, limits)
    np.testing.assert_array_equal(first.outputs["mnist"].argmax(1), template_predictions(mnist, means))
    np.testing.assert_allclose(first.outputs["mnist"], here.outputs["mnist"], atol=1e-4)
    np.testing.assert_array_equal(third.outputs["mnist"][:len(mnist)].argmax(1), template_predictions(mnist, means))


def test_a_task_of_another_shape_runs_on_the_cluster_as_it_runs_here(tmp_path, scheduler):
    """A colour competition (3×40×24, seven classes): the workers run the entry on the task's inputs (the interface
    travels with it) and store what a local run stores."""
    import numpy as np

    from harness.common import competition
    from harness.data.task import task_of
    from harness.entries.discovery import discover
    from tests.task_folders import colour_predictions, make_competition, write_colour_entry
    root = make_competition(tmp_path / "colours", per_class=(1, 3, 1))
    write_colour_entry(root / "submissions")
    rules = competition.load(root / "competition.toml")
    task = task_of(rules)
    public, _ = task.public.load(None)
    found = list(discover(root / "submissions", interface=task.interface).values())
    runs = {}
    for where, address in (("here", None), ("cluster", scheduler)):
        engine = make_engine(str(tmp_path / f"{where}.db"))
        options = runner.Options(runner.Limits(device="cpu", timeout=120), cluster=address)
        runner.run(engine, found, [public], options, argv=[], competition=rules)
        runs[where] = stored(engine)
    same_as(runs["here"], runs["cluster"])
    import io
    predicted = np.load(io.BytesIO(runs["cluster"]["colours"][3]))
    np.testing.assert_array_equal(predicted, colour_predictions(public.images))
