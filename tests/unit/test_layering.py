"""domain/ imports no framework; schema/ and resolvers/ never reach into infrastructure."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FRAMEWORKS = {"strawberry", "starlette", "sqlalchemy", "redis", "dramatiq", "asyncpg", "alembic"}


def imported_roots(package: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


def test_domain_imports_no_framework() -> None:
    offenders = {
        path: names & (FRAMEWORKS | {"infrastructure", "schema", "resolvers", "workers"})
        for path, names in imported_roots("domain").items()
    }
    assert {path: bad for path, bad in offenders.items() if bad} == {}


def test_api_layer_does_not_import_adapters() -> None:
    for package in ("schema", "resolvers"):
        offenders = {
            path: names & {"infrastructure", "sqlalchemy", "redis", "asyncpg", "workers"}
            for path, names in imported_roots(package).items()
        }
        assert {path: bad for path, bad in offenders.items() if bad} == {}
