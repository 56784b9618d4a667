"""The pgvector this code needs: 0.8.0 or newer.

Every tenant transaction sets ``hnsw.iterative_scan``, ``hnsw.max_scan_tuples`` and
``hnsw.scan_mem_multiplier`` (``tenant_settings.py``), which pgvector defines from 0.8.0
on. An older pgvector reserves the ``hnsw`` prefix once its library is loaded in a
connection, so from then on every tenant transaction of that connection fails
("invalid configuration parameter name"): `foundry migrate` refuses such a database
and /readyz reports it, rather than every request failing as an unexpected error.

The version read is the extension's (``pg_extension.extversion``): after an upgrade of
the pgvector package, ``ALTER EXTENSION vector UPDATE`` brings it up to the library's.
"""

from __future__ import annotations

import re

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

MINIMUM = (0, 8, 0)
MINIMUM_TEXT = ".".join(str(part) for part in MINIMUM)

# The installed extension's version, or else the one CREATE EXTENSION would install
# (a database not migrated yet); NULL when the server has no pgvector at all.
_VERSION = text(
    "SELECT coalesce("
    "(SELECT extversion FROM pg_extension WHERE extname = 'vector'), "
    "(SELECT default_version FROM pg_available_extensions WHERE name = 'vector'))"
)
_INSTALLED = text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")

_LEADING_NUMBER = re.compile(r"\d+")


def version_tuple(version: str) -> tuple[int, ...]:
    """A version's numbers: (0, 8, 0) for "0.8.0". Each part counts by its leading
    digits ("0.9.0-dev" is (0, 9, 0)), a part without any as 0."""
    parts = []
    for part in version.strip().split("."):
        number = _LEADING_NUMBER.match(part)
        parts.append(int(number.group()) if number else 0)
    return tuple(parts)


def supports_tenant_settings(version: str) -> bool:
    """Whether pgvector ``version`` defines every ``hnsw.*`` setting a tenant transaction
    makes (compared as numbers: "0.10.0" is newer than "0.8.0")."""
    padded = version_tuple(version) + (0,) * len(MINIMUM)
    return padded >= MINIMUM


def version_problem(version: str | None) -> str | None:
    """Why pgvector ``version`` cannot serve this code, or None when it can (or when
    there is no pgvector to judge: the migration that creates it says so itself)."""
    if version is None or supports_tenant_settings(version):
        return None
    return (
        f"pgvector {version} is too old: Knowledge Foundry needs {MINIMUM_TEXT} or newer "
        "(upgrade pgvector, then run ALTER EXTENSION vector UPDATE)"
    )


def is_version_problem(readiness: str) -> bool:
    """Whether a schema readiness text is :func:`version_problem`'s (whose fix is an
    upgrade of pgvector, not a migration)."""
    return readiness.startswith("pgvector ") and "too old" in readiness


async def installed_version(conn: AsyncConnection) -> str | None:
    """The installed extension's version; None when the database has none yet."""
    version = await conn.scalar(_INSTALLED)
    return None if version is None else str(version)


async def migration_version(conn: AsyncConnection) -> str | None:
    """The version a migration will run on: the installed one, or else the one it would
    install."""
    version = await conn.scalar(_VERSION)
    return None if version is None else str(version)
