"""One ``Limits`` value from competition.toml's [limits] to the entry's process, each value overridden by its flag;
and one ``Predictor`` seam for every place entries run (this machine, a Dask cluster, a warm pool)."""

from __future__ import annotations

import argparse

from harness import check, evaluate
from harness.common.competition import parse
from harness.common.limits import DEFAULT_MEMORY, DEFAULT_TIMEOUT, GIB, Limits
from harness.data.task import DatasetSpec
from harness.isolation import prediction
from harness.isolation.cluster import Cluster


def test_the_defaults_are_300_s_and_8_gib():
    assert (DEFAULT_TIMEOUT, DEFAULT_MEMORY, GIB) == (300.0, 8 * 1024 ** 3, 1024 ** 3)
    assert parse({}).limits(10_100) == Limits() == Limits(timeout=300.0, memory=8 * 1024 ** 3, device="auto")


def test_the_rules_set_the_time_and_a_value_given_wins():
    twenty = parse({"limits": {"timeout": "20 min"}})
    assert twenty.limits(10_100) == Limits(timeout=1200.0, memory=8 * 1024 ** 3)
    assert parse({"limits": {"seconds_per_1000_images": 10}}).limits(10_100).timeout == 101.0  # 10 s × 10.1
    assert twenty.limits(10_100, timeout=42.0, memory=3 * GIB, device="cpu", batch_size=8) == \
        Limits(timeout=42.0, memory=3 * 1024 ** 3, device="cpu", batch_size=8)


def test_evaluate_builds_the_limits_from_the_rules_and_its_flags():
    rules = parse({"limits": {"timeout": "20 min"}})
    sets = [DatasetSpec(kind="mnist", content_hash="x", labels=[0] * 100, images=None, source="test")]
    got = evaluate.entry_limits(evaluate.parser().parse_args(["--device", "cpu"]), rules, sets)
    assert got == Limits(timeout=1200.0, memory=8 * 1024 ** 3, device="cpu")
    flags = ["--timeout", "90", "--memory-limit", "1.5", "--batch-size", "16", "--device", "cpu"]
    got = evaluate.entry_limits(evaluate.parser().parse_args(flags), rules, sets)
    assert got == Limits(timeout=90.0, memory=int(1.5 * 1024 ** 3), device="cpu", batch_size=16)


def test_check_runs_under_its_own_time_and_estimates_against_the_competitions(tmp_path):
    config = tmp_path / "competition.toml"
    config.write_text('[limits]\ntimeout = "20 min"\n')
    rules = check.competition_rules(str(config))
    assert rules.limits(10_000, timeout=120.0, device="cpu") == Limits(timeout=120.0, memory=8 * 1024 ** 3,
                                                                       device="cpu")
    args = argparse.Namespace(mystery=tmp_path / "none", config=str(config))
    line = check.estimate(args, rules)({"images_per_second": 10.0, "load_seconds": 5.0, "device": "cpu"})
    assert line.endswith("within its time limit of 20 min.")
    broken = tmp_path / "broken.toml"
    broken.write_text("reveal = 3\n")
    assert check.competition_rules(str(broken)).limits(10_000) == Limits()  # an invalid file: the defaults


def test_this_machine_and_a_cluster_are_predictors():
    assert isinstance(prediction.LOCAL, prediction.Predictor)
    assert prediction.LOCAL.width == 1 and prediction.LOCAL.resolve_device("cpu") == "cpu"

    class Client:  # a Dask client's answer: two workers, of two threads and one
        def nthreads(self) -> dict[str, int]:
            return {"tcp://a:1": 2, "tcp://b:1": 1}

    cluster = Cluster(Client())
    assert isinstance(cluster, prediction.Predictor) and cluster.width == 3 and cluster.resolve_device("cpu") == "cpu"
