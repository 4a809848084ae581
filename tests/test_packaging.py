"""The package's version has one source, ``harness.__version__``, which setuptools reads for the metadata."""

from __future__ import annotations

import tomllib
from pathlib import Path

import harness

ROOT = Path(__file__).resolve().parents[1]


def test_the_version_is_written_once(tmp_path, monkeypatch):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and project["project"]["dynamic"] == ["version"]
    from setuptools import build_meta
    monkeypatch.chdir(ROOT)
    info = build_meta.prepare_metadata_for_build_wheel(str(tmp_path))
    metadata = (tmp_path / info / "METADATA").read_text()
    assert f"\nVersion: {harness.__version__}\n" in metadata
    assert info == f"mnist_club_leaderboard-{harness.__version__}.dist-info"
