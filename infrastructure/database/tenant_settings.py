"""The settings that make a transaction a tenant's, in one place for every kind of one.

Each is set with ``set_config(..., true)``, so it lasts until the transaction ends:
the non-bypassing application role (row-level security applies), the organisation
and user that every policy reads, and the filtered HNSW scans of ``chunk_search.py``.
The unit of work sends them as parameters; the read-only transactions of
``reader.py`` as literals, in the same round trip as their BEGIN.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

NAMES = ("role", "app.organization_id", "app.user_id", "hnsw.iterative_scan", "hnsw.ef_search")


def tenant_values(
    app_role: str, organization_id: UUID, user_id: UUID | None, hnsw_ef_search: int
) -> tuple[str, ...]:
    """The values of :data:`NAMES`, in order."""
    user = str(user_id) if user_id is not None else ""
    return (app_role, str(organization_id), user, "relaxed_order", str(int(hnsw_ef_search)))


def set_config_select(values: Sequence[str]) -> str:
    """``SELECT set_config(name, value, true), ...``; ``values`` are SQL expressions."""
    return "SELECT " + ", ".join(
        f"set_config('{name}', {value}, true)" for name, value in zip(NAMES, values, strict=True)
    )
