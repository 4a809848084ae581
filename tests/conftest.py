"""Shared fixtures: the MNIST folder beside the repo (as in CI), small datasets, template weights, and fresh
SQLite and PostgreSQL databases."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from harness import mnist, store
from tests.entries import class_means

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"
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


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    path = Path(os.environ.get("MNIST_DIR") or SHARED / "mnist")
    if not (path / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"MNIST IDX files not found in {path} (set MNIST_DIR)")
    return path


@pytest.fixture(scope="session")
def mnist_test(mnist_dir) -> mnist.MnistSplit:
    return mnist.load_split(mnist_dir, "test", allow_download=False)


@pytest.fixture(scope="session")
def means(mnist_dir) -> np.ndarray:
    train = mnist.load_split(mnist_dir, "train", allow_download=False)
    return class_means(train.images[:20000], train.labels[:20000])


@pytest.fixture(scope="session")
def small_mnist(mnist_test) -> store.DatasetSpec:
    """The first 300 MNIST test images as a dataset (fast runs through the whole pipeline)."""
    images, labels = mnist_test.images[:300], mnist_test.labels[:300]
    return store.DatasetSpec(kind="mnist", content_hash="small-mnist-300", labels=labels, images=images, source="test")


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
        with admin.connect() as connection:  # FORCE: engines the test left open are disconnected
            connection.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """A fresh, empty database of each kind: an SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'lb.db'}"
    return request.getfixturevalue("pg_url")
