"""The code's shape for a clean-up's before/after: modules per subsystem, distinct import arrows between subsystems,
functions over 60 lines (``python scripts/code_shape.py [ROOT]``; complexity: ``ruff check --select C901``)."""

import ast
import collections
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".")


def subsystem(modname: str) -> str:
    parts = modname.split(".")
    if parts[0] == "leaderboard":
        return "leaderboard"
    if len(parts) >= 2 and (root / "harness" / parts[1]).is_dir():
        return "harness." + parts[1]
    return "harness (commands/top)"


mods: collections.Counter = collections.Counter()
arrows: collections.Counter = collections.Counter()
long_fns = []
for pkg in ("harness", "leaderboard"):
    for path in (root / pkg).rglob("*.py"):
        if "migrations" in path.parts:
            continue
        name = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        mods[subsystem(name)] += 1
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                # from its first decorator, as tests/test_architecture.py counts (the limit it holds the code to)
                lines = node.end_lineno - min([node.lineno, *(d.lineno for d in node.decorator_list)]) + 1
                if lines > 60:
                    long_fns.append((lines, f"{name}.{node.name}"))
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module]
            else:
                continue
            for target in targets:
                if target.split(".")[0] in ("harness", "leaderboard") and subsystem(name) != subsystem(target):
                    arrows[(subsystem(name), subsystem(target))] += 1
print("modules per subsystem:", dict(sorted(mods.items())))
print("distinct arrows between subsystems:", len(arrows))
print("functions over 60 lines:", len(long_fns), sorted(long_fns, reverse=True))
