"""No import cycles between the modules of the lower layers, counting imports made inside functions (which would
hide a cycle from start-up but not from a reader); imports under `if TYPE_CHECKING:` are for annotations only."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ontology", "graph", "governance", "connectors", "simulation")


def module_imports(packages: tuple[str, ...]) -> dict[str, set[str]]:
    """Every module of `packages` and the modules of those packages it imports anywhere in its body."""
    files = {}
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            files[name] = path
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        annotation_only = {
            id(node)
            for branch in ast.walk(tree)
            if isinstance(branch, ast.If) and "TYPE_CHECKING" in ast.unparse(branch.test)
            for node in ast.walk(branch)
        }
        imported: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in annotation_only:
                continue
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            else:
                continue
            for target in targets:
                while target and target not in files:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    imported.add(target)
        graph[name] = imported
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (each is an import cycle)."""
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        order[module] = low[module] = len(order)
        stack.append(module)
        for other in graph[module]:
            if other not in order:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], order[other])
        if low[module] == order[module]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for module in graph:
        if module not in order:
            visit(module)
    return found


def test_the_finder_sees_a_cycle_hidden_inside_a_function() -> None:
    graph = {"a": {"b"}, "b": {"a"}, "c": {"a"}}
    assert cycles(graph) == [["a", "b"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycle_inside_or_across_the_lower_layers(package: str) -> None:
    graph = module_imports(PACKAGES)
    involved = [group for group in cycles(graph) if any(m.split(".")[0] == package for m in group)]
    assert involved == [], f"import cycles through {package}/: {involved}"


# What each lower layer may import of the project (annotation-only imports aside): dependencies point one way,
# api -> simulation, connectors -> governance -> graph -> ontology.
ALLOWED = {
    "ontology": {"ontology"},
    "graph": {"graph", "ontology"},
    "governance": {"governance", "graph", "ontology"},
}


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_a_lower_layer_imports_nothing_above_it(package: str) -> None:
    graph = module_imports(PACKAGES)
    upward = sorted(
        f"{module} -> {target}"
        for module, targets in graph.items()
        if module.split(".")[0] == package
        for target in targets
        if target.split(".")[0] not in ALLOWED[package]
    )
    assert upward == [], f"{package}/ imports layers above it: {upward}"
