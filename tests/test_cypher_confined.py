"""Cypher is written only in graph/: no string literal elsewhere holds a Cypher clause (MATCH, MERGE, CREATE on a
pattern).

Every other layer asks the GraphStore (a read plan, graph/plan.py, or a named read or write), so the scope is applied
and the dialect chosen in one place. Docstrings are documentation, not query text, and are not checked. A clause
keyword counts when a pattern follows it (`MATCH (n`, `MERGE (`, `CREATE (`): SQL such as the PostgreSQL push
trigger's `CREATE TRIGGER` names an object instead and is not Cypher.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEYWORDS = re.compile(r"\b(MATCH|MERGE|CREATE)\s*\(")
ALLOWED = ("graph", "tests")  # top-level folders that may hold Cypher text


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def cypher_literals(root: Path) -> list[str]:
    """`path:line: text` of every string literal (f-string parts included) outside graph/ and tests that holds a
    Cypher clause keyword."""
    found = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if relative.parts[0].startswith(".") or relative.parts[0] in ALLOWED:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        docstrings = _docstrings(tree)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docstrings
                and KEYWORDS.search(node.value)
            ):
                found.append(f"{relative}:{node.lineno}: {node.value[:60]!r}")
    return found


def test_no_cypher_outside_graph() -> None:
    assert cypher_literals(ROOT) == []


def test_the_check_finds_cypher_in_code(tmp_path: Path) -> None:
    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "reads.py").write_text(
        '"""A module that MATCHes nothing in its docstring: CREATE is fine here."""\n'
        'QUERY = "MATCH (n:Twin) RETURN n"\n'
        'def run(label):\n    return f"MERGE (n:{label})"\n'
        'TRIGGER = "CREATE TRIGGER t AFTER INSERT ON orders FOR EACH STATEMENT EXECUTE FUNCTION f()"\n',
        encoding="utf-8",
    )
    (tmp_path / "graph").mkdir()
    (tmp_path / "graph" / "store.py").write_text('Q = "CREATE (n)"\n', encoding="utf-8")
    found = [line.split(":")[0:2] for line in cypher_literals(tmp_path)]
    assert found == [["api/reads.py", "2"], ["api/reads.py", "4"]]
