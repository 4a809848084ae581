"""Count the project's own import graph: modules per folder, import arrows between modules, and import cycles.

    python scripts/import_graph.py [--packages harness leaderboard]

An arrow is one module importing another of the project (``import a.b``, ``from a import b``, ``from a.b import c``;
imports inside functions count too, since they are dependencies as well). Cycles are the strongly connected
components of more than one module, and the cycles between top-level subpackages of ``harness``.
"""

from __future__ import annotations

import argparse
import ast
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def modules(packages: list[str]) -> dict[str, Path]:
    found = {}
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations/versions" in path.as_posix():
                continue
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def arrows(found: dict[str, Path]) -> set[tuple[str, str]]:
    edges = set()
    for name, path in found.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(parent + ([base] if base else []))
                targets = [f"{base}.{a.name}" for a in node.names] + [base]
            for target in targets:
                while target and target not in found:
                    target = target.rsplit(".", 1)[0] if "." in target else ""
                if target and target != name:
                    edges.add((name, target))
    # "from a import b" adds both a and a.b; keep the package arrow only when nothing deeper was meant
    return edges


def sccs(nodes, edges) -> list[list[str]]:
    graph = defaultdict(list)
    for a, b in edges:
        graph[a].append(b)
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def subsystem(name: str) -> str:
    parts = name.split(".")
    return ".".join(parts[:2]) if parts[0] == "harness" and len(parts) > 1 else parts[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--packages", nargs="+", default=["harness", "leaderboard"])
    args = p.parse_args()
    found = modules(args.packages)
    edges = {(a, b) for a, b in arrows(found) if not b.startswith(a + ".")}  # a package importing its own children
    per_folder = Counter(str(path.parent.relative_to(ROOT)) for path in found.values())
    print("modules per folder:")
    for folder, n in sorted(per_folder.items()):
        print(f"  {folder}/: {n}")
    print(f"modules: {len(found)}  import arrows: {len(edges)}")
    module_cycles = sccs(found, edges)
    print(f"module cycles: {len(module_cycles)}")
    for comp in module_cycles:
        print("  " + " <-> ".join(comp))
    sub_edges = {(subsystem(a), subsystem(b)) for a, b in edges if subsystem(a) != subsystem(b)}
    sub_cycles = sccs({subsystem(n) for n in found}, sub_edges)
    print(f"cycles between subsystems: {len(sub_cycles)}")
    for comp in sub_cycles:
        print("  " + " <-> ".join(comp))
    print("harness -> leaderboard arrows: "
          f"{sum(1 for a, b in edges if a.startswith('harness') and b.startswith('leaderboard'))}")


if __name__ == "__main__":
    main()
