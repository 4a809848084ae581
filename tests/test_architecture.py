"""The shape of the code holds: the layers, the harness kept free of the dashboard, no cycle between the harness's
subpackages, the entry's process (harness/isolation/inside/) free of the host side, and running an entry free of the
results store, as declared for import-linter in pyproject.toml; few modules at the top of harness/; and ruff, with the
rules in pyproject.toml ([tool.ruff]), finds nothing anywhere in the repository, its complexity limit included; no
function of the product (harness/, leaderboard/; migrations aside) is longer than FUNCTION_LINES."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import REPO

TOP_LIMIT = 17  # modules at the top of harness/: the commands, __main__ (the `harness` command), the contract,
# the run loop, errors
FUNCTION_LINES = 60  # the longest a function of harness/ or leaderboard/ may be, docstring and comments included
COMPLEXITY = 15      # the most complex (McCabe) any function may be, as ruff's C901 counts it


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


def test_ruff_holds_every_function_to_the_complexity_limit():
    lint = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["ruff"]["lint"]
    assert "C90" in lint["select"]
    assert lint["mccabe"]["max-complexity"] == COMPLEXITY
    assert set(lint["per-file-ignores"].get("harness/store/migrations/*.py", [])) <= {"C901"}


def long_functions(root: Path, limit: int) -> list[tuple[str, int]]:
    """Every function (methods and nested ones too) under ``root`` longer than ``limit`` lines, from its ``def`` (or
    its first decorator) to its last line, outside migrations: (module path:name, lines)."""
    found = []
    for path in sorted(root.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                lines = node.end_lineno - first + 1
                if lines > limit:
                    found.append((f"{path.relative_to(root.parent)}:{node.name}", lines))
    return found


def test_no_function_of_the_product_is_longer_than_the_limit():
    assert [*long_functions(REPO / "harness", FUNCTION_LINES), *long_functions(REPO / "leaderboard", FUNCTION_LINES)] \
        == []


def test_the_length_check_sees_a_long_function_a_method_and_a_decorator(tmp_path):
    package = tmp_path / "pkg"
    (package / "migrations").mkdir(parents=True)
    body = "".join(f"    x{i} = {i}\n" for i in range(59))
    (package / "a.py").write_text(f"def short():\n{body}\n\ndef long():\n{body}    return 1\n")
    method = "".join(f"        x{i} = {i}\n" for i in range(60))
    (package / "b.py").write_text(f"class C:\n    @staticmethod\n    def method():\n{method}")
    (package / "migrations" / "m.py").write_text(f"def upgrade():\n{body * 2}")
    # short: def + 59 lines = 60; long: 61; method: its decorator + def + 60 = 62; migrations: not looked at
    assert sorted(long_functions(package, 60)) == [("pkg/a.py:long", 61), ("pkg/b.py:method", 62)]


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
