"""The package has no import cycle, not even one hidden in a function body: modules form layers."""

from __future__ import annotations

import ast
from pathlib import Path

import cryoseg

SRC = Path(cryoseg.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = ["cryoseg", *path.relative_to(SRC).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_package(name: str) -> bool:
    return (SRC.joinpath(*name.split(".")[1:]) / "__init__.py").is_file()


def _exists(name: str) -> bool:
    rel = name.split(".")[1:]
    return _is_package(name) or SRC.joinpath(*rel).with_suffix(".py").is_file()


def import_graph() -> dict[str, set[str]]:
    """module -> the cryoseg modules it imports anywhere in its body (top level, functions, TYPE_CHECKING aside)."""
    graph: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        name = _module_name(path)
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        edges: set[str] = set()
        tree = ast.parse(path.read_text())
        skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{base}.{node.module}" if node.module else base
                else:
                    base = node.module or ""
                targets = [f"{base}.{a.name}" if _exists(f"{base}.{a.name}") else base for a in node.names]
            else:
                continue
            edges |= {t for t in targets if t.startswith("cryoseg.") and t != name and _exists(t)}
        graph[name] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_checker_sees_cycles_in_function_bodies():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert "cryoseg.io.volumes" in import_graph()["cryoseg.io"]  # a package imports what it exports


def test_no_import_cycles():
    # a package's __init__ re-exporting its modules is not a layer of its own: modules that import their own
    # package's __init__ would close a cycle through it, and are reported like any other
    assert _cycles(import_graph()) == []
