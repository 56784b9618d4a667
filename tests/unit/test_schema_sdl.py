"""The committed schema.graphql is the code's schema (the web client's types come from it)."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from infrastructure.cli import main
from infrastructure.cli_maintenance import schema_sdl

COMMITTED = Path(__file__).resolve().parents[2] / "schema.graphql"
FIX = (
    "run `foundry schema export` (writes ./schema.graphql) and commit it; "
    "`make test` then regenerates web/app's types and type-checks the client against it"
)


def test_committed_sdl_matches_the_code() -> None:
    assert COMMITTED.is_file(), f"schema.graphql is missing: {FIX}"
    committed = COMMITTED.read_text(encoding="utf-8")
    current = schema_sdl()
    if committed != current:
        diff = difflib.unified_diff(
            committed.splitlines(), current.splitlines(), "schema.graphql", "code", lineterm=""
        )
        pytest.fail(f"schema.graphql differs from the code's schema: {FIX}\n" + "\n".join(diff))


def test_schema_export_writes_the_sdl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "out.graphql"
    assert main(["schema", "export", "--output", str(output)]) == 0
    assert output.read_text(encoding="utf-8") == schema_sdl()
    assert "type Query" in schema_sdl() and "subscription" in schema_sdl().lower()
    assert f"Wrote {output}" in capsys.readouterr().out
