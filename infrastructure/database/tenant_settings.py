"""The settings that make a transaction a tenant's, in one place for every kind of one.

Each is set with ``set_config(..., true)``, so it lasts until the transaction ends:
the non-bypassing application role (row-level security applies), the organisation
and user that every policy reads, and the filtered HNSW scans of ``chunk_search.py``.
The unit of work sends them as parameters; the read-only transactions of
``reader.py`` as literals, in the same round trip as their BEGIN.

A filtered HNSW scan (the planner's choice for a large organisation, and sometimes
for a selective filter: an organisation the statistics do not know yet, chosen
documents) walks the graph until k rows pass the filter, or until it reaches one of
pgvector's two limits, and then returns fewer: :data:`HNSW_MAX_SCAN_TUPLES` visited
tuples (pgvector's default is 20,000), or ``work_mem`` x :data:`HNSW_SCAN_MEM_MULTIPLIER`
of memory. With pgvector's default multiplier (1) and PostgreSQL's default work_mem
(4 MB), memory ran out first, after about 21,000 tuples of these 384-dimension
vectors (about 200 bytes a tuple), so raising the tuple limit alone changed nothing.
The tuple limit is the one that counts now: 100,000 tuples, about 20 MB, and about
a second of one core at worst (measured: 56,000 tuples in 0.45-0.6 s), paid only by
a scan whose filter leaves few rows near the query. The memory limit stays above
it at the default work_mem (16 x 4 MB), as a backstop.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

HNSW_MAX_SCAN_TUPLES = 100_000
HNSW_SCAN_MEM_MULTIPLIER = 16

NAMES = (
    "role",
    "app.organization_id",
    "app.user_id",
    "hnsw.iterative_scan",
    "hnsw.ef_search",
    "hnsw.max_scan_tuples",
    "hnsw.scan_mem_multiplier",
)


def tenant_values(
    app_role: str, organization_id: UUID, user_id: UUID | None, hnsw_ef_search: int
) -> tuple[str, ...]:
    """The values of :data:`NAMES`, in order."""
    user = str(user_id) if user_id is not None else ""
    return (
        app_role,
        str(organization_id),
        user,
        "relaxed_order",
        str(int(hnsw_ef_search)),
        str(HNSW_MAX_SCAN_TUPLES),
        str(HNSW_SCAN_MEM_MULTIPLIER),
    )


def set_config_select(values: Sequence[str]) -> str:
    """``SELECT set_config(name, value, true), ...``; ``values`` are SQL expressions."""
    return "SELECT " + ", ".join(
        f"set_config('{name}', {value}, true)" for name, value in zip(NAMES, values, strict=True)
    )
