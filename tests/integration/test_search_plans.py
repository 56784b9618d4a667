"""The nearest-chunk search keeps a plan made for its own organisation's size.

The driver prepares each statement once per connection; after five runs PostgreSQL
may keep a generic plan, made without the parameters' values. With the organisation
and the limit as parameters, that plan guessed an average organisation and a tenth of
its rows, and for a large one it was an exact scan of all of its chunks instead of the
HNSW scan.
"""

from __future__ import annotations

import random

from sqlalchemy import text

from infrastructure.container import Container
from infrastructure.database.repositories.chunk_search import nearest_statement
from infrastructure.database.uow import SqlUnitOfWork
from tests.integration.test_chunk_search import (
    DIMENSIONS,
    document_with_chunks,
    member,
    near,
    unit,
)

HNSW = "ix_chunks_embedding_hnsw"
RUNS = 8  # past the five custom plans PostgreSQL makes before it may go generic


LIMIT = 10


async def test_a_large_organisation_keeps_its_hnsw_plan_on_a_prepared_statement(
    container: Container,
) -> None:
    rng = random.Random(11)
    anchor = unit([rng.gauss(0, 1) for _ in range(DIMENSIONS)])
    large = await member(container)
    for _ in range(50):  # 6,000 chunks in 50 documents
        await document_with_chunks(container, large, [near(anchor, rng, 0.5) for _ in range(120)])
    for _ in range(30):  # many small organisations make the average one small
        small = await member(container)
        await document_with_chunks(container, small, [near(anchor, rng, 0.5) for _ in range(5)])
    async with container.engine.begin() as conn:
        await conn.execute(text("ANALYZE chunks, documents"))

    literal = nearest_statement(large.organization_id, LIMIT, False)
    organization = f"'{large.organization_id}'::uuid"
    assert literal.count(organization) == 2 and literal.endswith(f"LIMIT {LIMIT}")
    parameter = literal.replace(organization, "$2").replace(f"LIMIT {LIMIT}", "LIMIT $3")
    vector = "ARRAY[" + ",".join(f"{value:.6f}" for value in anchor) + "]::real[]"
    plans: dict[str, str] = {}
    async with container.uow_factory.tenant(large) as uow:
        assert isinstance(uow, SqlUnitOfWork)
        conn = await uow.session.connection()
        await conn.exec_driver_sql(f"PREPARE by_literal(real[]) AS {literal}")
        await conn.exec_driver_sql(f"PREPARE by_parameter(real[], uuid, int) AS {parameter}")
        for name, extra in (("by_literal", ""), ("by_parameter", f", {organization}, {LIMIT}")):
            for _ in range(RUNS):
                result = await conn.exec_driver_sql(f"EXPLAIN EXECUTE {name}({vector}{extra})")
                plans[name] = "\n".join(str(row[0]) for row in result)
    # The statement the app sends keeps walking the HNSW graph...
    assert HNSW in plans["by_literal"], plans["by_literal"]
    # ...where the same statement with the organisation and limit as parameters ends
    # up scanning every one of the organisation's chunks.
    assert HNSW not in plans["by_parameter"], plans["by_parameter"]


def test_the_statement_is_built_from_a_uuid_only() -> None:
    try:
        nearest_statement("x' OR true --", 10, False)  # type: ignore[arg-type]
    except TypeError:
        pass
    else:
        raise AssertionError("a non-UUID organisation was formatted into SQL")
