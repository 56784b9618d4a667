"""The search statements keep the plans they should on the driver's prepared statements.

The driver prepares each statement once per connection; after five runs PostgreSQL
may keep a generic plan, made without the parameters' values. With the organisation
and the limit as parameters, the nearest-chunk statement's generic plan guessed an
average organisation and a tenth of its rows, and for a large one it was an exact scan
of all of its chunks instead of the HNSW scan. The full-text statement, the other way
round, should settle on its generic plan instead of being planned on every run.
"""

from __future__ import annotations

import random

from sqlalchemy import text

from infrastructure.container import Container
from infrastructure.database.driver import driver_connection
from infrastructure.database.repositories.chunk_search import (
    matching_statement,
    nearest_statement,
)
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


async def test_the_fulltext_statement_settles_on_a_generic_plan(container: Container) -> None:
    rng = random.Random(5)
    anchor = unit([rng.gauss(0, 1) for _ in range(DIMENSIONS)])
    principal = await member(container)
    texts = [f"passage {n} about the retention of invoices" for n in range(20)]
    await document_with_chunks(
        container, principal, [near(anchor, rng, 0.5) for _ in texts], texts=texts
    )
    literal = matching_statement(LIMIT, False)
    assert f"LIMIT {LIMIT}" in literal and "$4" not in literal
    # The statement as it was: the limit and the (absent) documents as parameters.
    parameter = literal.replace(f"LIMIT {LIMIT}", "LIMIT $5::integer").replace(
        "NULL::uuid[]", "$4::uuid[]"
    )
    plans: dict[str, tuple[int, int]] = {}
    async with container.uow_factory.tenant(principal) as uow:
        assert isinstance(uow, SqlUnitOfWork)
        driver = await driver_connection(uow.session)
        for statement, extra in ((literal, []), (parameter, [None, LIMIT])):
            for _ in range(RUNS):
                rows = await driver.fetch(statement, anchor, "retention invoices", 500, *extra)
                assert len(rows) == LIMIT
            row = await driver.fetchrow(
                "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                " WHERE statement = $1",
                statement,
            )
            assert row is not None
            plans[statement] = (row["generic_plans"], row["custom_plans"])
        function_settings = await driver.fetchval(
            "SELECT proconfig FROM pg_proc WHERE proname = 'chunk_text_matches'"
        )
    generic, custom = plans[literal]
    assert generic >= RUNS - 5 and custom <= 5, plans[literal]
    assert plans[parameter] == (0, RUNS), plans[parameter]
    # Its function's own query goes generic at once (migration 0010).
    assert "plan_cache_mode=force_generic_plan" in function_settings
