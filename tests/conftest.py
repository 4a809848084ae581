"""Shared fixtures: the MNIST and Semeion folders beside the repo (as in CI), small datasets, template weights,
fresh SQLite and PostgreSQL databases (and an engine on each), the arguments of ``python -m harness.evaluate``, and
the dashboard's results database, evaluated once per session.

A test that needs a shared data set that is missing is skipped, and fails under ``CI=true`` (CI must run it).
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import numpy as np
import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from harness.data import mnist
from harness.data.task import DatasetSpec
from harness.store.engine import make_engine
from tests.entries import class_means

if TYPE_CHECKING:
    from tests.dashboard_fixtures import Fixture

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"
SEMEION = SHARED / "semeion"
PG_ENV = "LEADERBOARD_TEST_PG_URL"  # a role allowed to CREATE DATABASE; .ci/run starts a server and sets it


@pytest.fixture(autouse=True, scope="session")
def default_competition(tmp_path_factory):
    """Tests run under the built-in competition rules, not the repository's competition.toml (its deadline)."""
    path = tmp_path_factory.mktemp("competition") / "competition.toml"
    path.write_text("# built-in defaults: no deadline, several entries per member\n")
    previous = os.environ.get("COMPETITION_CONFIG")
    os.environ["COMPETITION_CONFIG"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("COMPETITION_CONFIG", None)
    else:
        os.environ["COMPETITION_CONFIG"] = previous


@pytest.fixture(autouse=True, scope="session")
def dashboards_score_nothing():
    """A dashboard started by a test (AppTest or ``streamlit run``) starts no watcher of its own, unless the test
    asks for one (``LEADERBOARD_EVALUATE=on``): tests that score start their own runs."""
    previous = os.environ.get("LEADERBOARD_EVALUATE")
    os.environ["LEADERBOARD_EVALUATE"] = "off"
    yield
    if previous is None:
        os.environ.pop("LEADERBOARD_EVALUATE", None)
    else:
        os.environ["LEADERBOARD_EVALUATE"] = previous


def mnist_folder() -> Path:
    """Where the tests read MNIST: ``$MNIST_DIR``, else ``../shared/datasets/mnist``."""
    return Path(os.environ.get("MNIST_DIR") or SHARED / "mnist")


def missing_data(what: str, folder: Path) -> NoReturn:
    """Skips the test that needs the shared data set ``what``, missing from ``folder``; fails it under CI."""
    reason = (f"{what} not found in {folder}: put the club's shared data sets in {SHARED} beside the repository "
              f"(MNIST may instead be in the folder that $MNIST_DIR names)")
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run these tests", pytrace=False)
    pytest.skip(reason)


def semeion_folder() -> Path:
    """``../shared/datasets/semeion``, for tests and helpers that need real handwriting (see :func:`missing_data`)."""
    if not SEMEION.is_dir():
        missing_data("Semeion", SEMEION)
    return SEMEION


needs_mnist = pytest.mark.usefixtures("mnist_dir")  # skipped without ../shared or $MNIST_DIR, failed under CI
needs_semeion = pytest.mark.usefixtures("semeion_dir")  # skipped without ../shared, failed under CI


def evaluate_args(subs, mnist_dir, mystery, db, *extra: str) -> list[str]:
    """The arguments of ``python -m harness.evaluate`` on the CPU: the entries in ``subs``, MNIST from ``mnist_dir``,
    the guest digits in ``mystery``, results in ``db`` (a path or a URL), then ``extra``."""
    return ["--submissions", str(subs), "--mnist-dir", str(mnist_dir), "--mystery", str(mystery), "--db", str(db),
            "--device", "cpu", *extra]


def evaluate_command(*args: str) -> list[str]:
    """``python -m harness.evaluate`` with ``args`` (see :func:`evaluate_args`), as a process to start."""
    return [sys.executable, "-m", "harness.evaluate", *args]


@pytest.fixture()
def one_thread() -> Iterator[None]:
    """One torch thread for the test: on a busy 2-core machine that is faster than two, and training results do not
    depend on it."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    path = mnist_folder()
    if mnist.missing_files(path, "test") or mnist.missing_files(path, "train"):
        missing_data("MNIST", path)
    return path


@pytest.fixture(scope="session")
def semeion_dir() -> Path:
    return semeion_folder()


@pytest.fixture(scope="session")
def mnist_test(mnist_dir) -> mnist.MnistSplit:
    return mnist.load_split(mnist_dir, "test", allow_download=False)


@pytest.fixture(scope="session")
def means(mnist_dir) -> np.ndarray:
    train = mnist.load_split(mnist_dir, "train", allow_download=False)
    return class_means(train.images[:20000], train.labels[:20000])


@pytest.fixture(scope="session")
def fx(tmp_path_factory, mnist_dir, mnist_test) -> Fixture:
    """The dashboard's results database (tests/dashboard_fixtures.py: five entries really evaluated, sealed and
    revealed), built once for the whole session: tests read it, and copy it before they change anything."""
    from tests import dashboard_fixtures
    train = mnist.load_split(mnist_dir, "train", allow_download=False)
    return dashboard_fixtures.build(tmp_path_factory.mktemp("dash"), train.images, train.labels, mnist_test.images,
                                    mnist_test.labels)


@pytest.fixture(scope="session")
def small_mnist(mnist_test) -> DatasetSpec:
    """The first 300 MNIST test images as a dataset (fast runs through the whole pipeline)."""
    images, labels = mnist_test.images[:300], mnist_test.labels[:300]
    return DatasetSpec(kind="mnist", content_hash="small-mnist-300", labels=labels, images=images, source="test")


@pytest.fixture()
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards (skipped without a server, but
    failed in CI, which must run these tests)."""
    admin_url = os.environ.get(PG_ENV)
    if not admin_url:
        reason = f"${PG_ENV} is not set (.ci/run starts a PostgreSQL server and sets it)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must run the PostgreSQL tests")
        pytest.skip(reason)
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"test_{uuid.uuid4().hex[:16]}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        _drop(admin, name)
        admin.dispose()


def _drop(admin, name: str, attempts: int = 20) -> None:
    """Drop a test database. FORCE disconnects engines the test left open; an autovacuum worker (the server's own,
    which the test role may not signal) can still be connected for a moment, so the drop is tried again."""
    from sqlalchemy.exc import DBAPIError
    for attempt in range(attempts):
        try:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except DBAPIError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.5)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path) -> str:
    """A fresh, empty database of each kind: an SQLite file, then a PostgreSQL database (marked ``postgres``)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'lb.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture()
def engine(db_url):
    """An engine on a fresh database of each kind (see :func:`db_url`), disposed of afterwards."""
    engine = make_engine(db_url)
    yield engine
    engine.dispose()
