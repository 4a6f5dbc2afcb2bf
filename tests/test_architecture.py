"""The package's layering, read from its imports: no cycle, the contract at the bottom,
the CLI at the top.

Only module-level imports count (those that run when a module is imported); an
import inside a function defers a heavy dependency and is checked separately for
the exporter.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "spikeonnx"
BOTTOM = {"spikeonnx.contract", "spikeonnx.philox", "spikeonnx.registry", "spikeonnx.fileio", "spikeonnx.devices"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: Dict[str, Path] = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not _is_package(module):
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _targets(module: str, node: ast.stmt) -> Iterator[str]:
    """The spikeonnx modules an import statement imports."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            name = alias.name
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name:
                yield name
    elif isinstance(node, ast.ImportFrom):
        source = _resolve(module, node)
        for alias in node.names:
            submodule = f"{source}.{alias.name}"
            if submodule in MODULES:
                yield submodule  # from package import submodule
            elif source in MODULES:
                yield source


def _module_level(tree: ast.Module) -> Iterator[ast.stmt]:
    """Statements that run at import time: the top level, and inside top-level if/try/with."""
    stack: List[ast.stmt] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            for block in ("body", "orelse", "finalbody", "handlers"):
                for child in getattr(node, block, []):
                    stack.extend(child.body if isinstance(child, ast.ExceptHandler) else [child])


def _function_level(tree: ast.Module) -> Iterator[ast.stmt]:
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)):
                    yield inner


def _graph() -> Dict[str, Set[str]]:
    graph: Dict[str, Set[str]] = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        edges = {t for node in _module_level(tree) for t in _targets(module, node)}
        graph[module] = edges - {module}
    return graph


GRAPH = _graph()


def _cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found: List[List[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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


def test_the_graph_finds_the_modules_and_their_imports():
    # guards the parser itself: a graph without edges would make every check pass
    assert "spikeonnx.exporter.passes" in GRAPH
    assert "spikeonnx.contract" in GRAPH["spikeonnx.exporter.passes"]
    assert "spikeonnx.philox" in GRAPH["spikeonnx.contract"]
    assert "spikeonnx.exporter.core" in GRAPH["spikeonnx.exporter"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle():
    assert _cycles(GRAPH) == []


@pytest.mark.parametrize("module", sorted(BOTTOM))
def test_bottom_modules_import_nothing_above_them(module):
    assert GRAPH[module] <= BOTTOM, sorted(GRAPH[module] - BOTTOM)


def test_nothing_imports_the_cli():
    importers = sorted(
        m for m, targets in GRAPH.items()
        if any(t == "spikeonnx.cli" or t.startswith("spikeonnx.cli.") for t in targets)
        and not (m == "spikeonnx.cli" or m.startswith("spikeonnx.cli.") or m == "spikeonnx.__main__")
    )
    assert importers == []


@pytest.mark.parametrize(
    "layer, forbidden",
    [
        ("spikeonnx.reference", ("exporter", "runtime", "analysis", "cli")),
        ("spikeonnx.schemas", ("exporter", "runtime", "analysis", "cli")),
        ("spikeonnx.ops", ("exporter", "runtime", "analysis", "cli")),
        ("spikeonnx.runtime", ("exporter", "analysis", "cli")),
        ("spikeonnx.exporter", ("runtime", "analysis", "cli")),
    ],
)
def test_pipeline_layers_import_downward_only(layer, forbidden):
    modules = [m for m in GRAPH if m == layer or m.startswith(layer + ".")]
    upward: List[Tuple[str, str]] = [
        (m, t)
        for m in modules
        for t in sorted(GRAPH[m])
        if any(t == f"spikeonnx.{f}" or t.startswith(f"spikeonnx.{f}.") for f in forbidden)
    ]
    assert upward == []


# A function-local import in the exporter only defers TensorFlow (or something that
# imports it): the built-in handlers, the tf2onnx bridge, the TensorFlow-bound context.
_DEFERRED = {"tensorflow", "tf2onnx", "keras", "keras_layers", "spikeonnx.exporter.builtin",
             "spikeonnx.exporter.convert", "spikeonnx.exporter.context"}


def test_exporter_defers_only_heavy_imports():
    found = []
    for module, path in MODULES.items():
        if not module.startswith("spikeonnx.exporter"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in _function_level(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                source = _resolve(module, node)
                names = [f"{source}.{a.name}" if f"{source}.{a.name}" in MODULES else source for a in node.names]
            for name in names:
                if not any(name == d or name.startswith(d + ".") for d in _DEFERRED):
                    found.append((module, name))
    assert found == []
