"""The shape of the code holds: the layers, the harness kept free of the dashboard, no cycle between the harness's
subpackages, the entry's process (harness/isolation/inside/) free of the host side, and running an entry free of the
results store, as declared for import-linter in pyproject.toml; few modules at the top of harness/; and ruff, with the
rules in pyproject.toml ([tool.ruff]), finds nothing anywhere in the repository."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

TOP_LIMIT = 17  # modules at the top of harness/: the commands, __main__ (the `harness` command), the contract,
# the run loop, errors


def test_import_contracts_are_kept():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if lint is None:
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    done = subprocess.run([lint, "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "5 kept, 0 broken" in done.stdout


def test_ruff_finds_nothing():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e '.[dev]')")
    done = subprocess.run([ruff, "check", "--no-cache", "--output-format", "concise", "."], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "All checks passed!" in done.stdout


def test_the_top_of_harness_holds_few_modules():
    top = sorted(p.name for p in (REPO / "harness").glob("*.py"))
    assert len(top) <= TOP_LIMIT, top


def test_the_modules_an_entrys_process_starts_from_live_inside():
    """The sandbox's server, a warm entry's server and the unsandboxed child are in harness/isolation/inside/, the
    side that the forbidden contract keeps free of the host."""
    import inspect

    from harness.isolation import process, sandbox_command, warm
    started = {"sandbox": inspect.signature(sandbox_command.command).parameters["module"].default,
               "warm": warm.MODULE, "unsandboxed": process.unsandboxed.main.__module__}
    assert started == {"sandbox": "harness.isolation.inside.sandbox_server",
                       "warm": "harness.isolation.inside.warm_server",
                       "unsandboxed": "harness.isolation.inside.unsandboxed"}
