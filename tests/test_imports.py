"""The package's import graph runs one way: no module imports, directly or through others, a module that imports it.

Function-level imports count as much as top-level ones. The graph is read with ``ast``, so nothing is imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

import laser_jax

PACKAGE = Path(laser_jax.__file__).parent


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package's modules it imports anywhere in its body, function bodies included."""
    paths = {module_name(path, package): path for path in package.rglob("*.py")}
    graph = {name: set() for name in paths}
    for name, path in paths.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    anchor = name.split(".") if is_package else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                names = [f"{base}.{alias.name}" for alias in node.names]
                # ``from pkg import module`` imports the module; ``from pkg import name`` imports pkg itself
                targets = [t for t in names if t in paths] + ([base] if any(t not in paths for t in names) else [])
            else:
                continue
            for target in targets:
                while target and target not in paths:
                    target = target.rpartition(".")[0]
                if target and target != name and target != package.name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_cycle_finder_sees_a_function_level_cycle(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "low.py").write_text("def f():\n    from pkg.high import g\n")
    (package / "high.py").write_text("from . import low\n")
    (package / "side.py").write_text("import pkg.low\n")
    graph = import_graph(package)
    assert graph["pkg.low"] == {"pkg.high"} and graph["pkg.high"] == {"pkg.low"}
    assert cycles(graph) == [["pkg.high", "pkg.low"]]


def test_laser_jax_has_no_import_cycle():
    graph = import_graph()
    assert "laser_jax.sweep" in graph and "laser_jax.laser" in graph["laser_jax.sweep"]
    assert cycles(graph) == []


def test_lower_modules_do_not_import_higher_ones():
    """The engine knows nothing of the store or the protocol, the store nothing of the protocol; only the CLI imports the CLI."""
    graph = import_graph()

    def reaches(start):
        seen, todo = set(), [start]
        while todo:
            for other in graph[todo.pop()]:
                if other not in seen:
                    seen.add(other)
                    todo.append(other)
        return seen

    for low, high in [("laser_jax.ground", "laser_jax"), ("laser_jax.sweep", "laser_jax.results"),
                      ("laser_jax.sweep", "laser_jax.protocol"), ("laser_jax.results", "laser_jax.protocol"),
                      ("laser_jax.selection", "laser_jax.results"), ("laser_jax.laser", "laser_jax.sweep")]:
        assert not any(m == high or m.startswith(high + ".") for m in reaches(low)), f"{low} imports {high}"
    assert not any(m.startswith("laser_jax.cli") for name in graph if not name.startswith("laser_jax.cli")
                   for m in graph[name]), "only the CLI imports the CLI"
