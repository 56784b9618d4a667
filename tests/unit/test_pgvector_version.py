"""Which pgvector versions define the hnsw.* settings every tenant transaction makes."""

from __future__ import annotations

import pytest

from infrastructure.database.pgvector_version import (
    supports_tenant_settings,
    version_problem,
    version_tuple,
)


@pytest.mark.parametrize(
    "version", ["0.8.0", "0.8.1", "0.9.0", "0.10.0", "1.0", "0.8", "0.9.0-dev"]
)
def test_pgvector_0_8_and_newer_is_enough(version: str) -> None:
    assert supports_tenant_settings(version)
    assert version_problem(version) is None


@pytest.mark.parametrize("version", ["0.7.4", "0.7", "0.5.1", "0.1.0", "0.07.9"])
def test_older_pgvector_is_not(version: str) -> None:
    assert not supports_tenant_settings(version)
    assert version_problem(version) == (
        f"pgvector {version} is too old: Knowledge Foundry needs 0.8.0 or newer "
        "(upgrade pgvector, then run ALTER EXTENSION vector UPDATE)"
    )


def test_versions_compare_as_numbers_not_text() -> None:
    assert version_tuple("0.10.0") == (0, 10, 0)
    assert version_tuple("0.9.0-dev") == (0, 9, 0)
    assert version_tuple("0.x.1") == (0, 0, 1)
    assert version_tuple("0.10.0") > version_tuple("0.8.0")  # as text, "0.10.0" < "0.8.0"
    assert supports_tenant_settings("0.10.0")


def test_no_pgvector_is_left_to_the_migration_to_report() -> None:
    assert version_problem(None) is None
