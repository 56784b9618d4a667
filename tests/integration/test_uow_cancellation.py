"""A unit of work cancelled while it begins (a subscription the client completed meanwhile)
leaves no connection checked out: every await of its start is a driver call inside
SQLAlchemy's execution, which takes the CancelledError for a disconnect, invalidates the
connection and so checks it back in (SQLAlchemy 2.1, ``util.is_exit_exception``), without
the unit of work closing its session. This keeps that so: a burst of cancellations must
not empty the pool."""

from __future__ import annotations

import asyncio
import uuid
from typing import cast

import pytest
from sqlalchemy import event, text
from sqlalchemy.pool import QueuePool

from infrastructure.container import BackendUrls
from infrastructure.database.engine import create_engine, create_session_factory
from infrastructure.database.uow import SqlUnitOfWork, UnitOfWorkOptions

POOL_SIZE = 1  # and as many again in overflow


async def test_a_unit_of_work_cancelled_while_it_enters_its_tenant_holds_no_connection(
    urls: BackendUrls,
) -> None:
    engine = create_engine(urls.database_url, POOL_SIZE, statement_timeout_ms=5_000)
    pool = cast(QueuePool, engine.pool)
    entering = asyncio.Event()

    def before_execute(*args: object) -> None:
        statement = args[2]
        if isinstance(statement, str) and "set_config" in statement:
            entering.set()  # the tenant's settings are on their way to the server

    event.listen(engine.sync_engine, "before_cursor_execute", before_execute)
    sessions = create_session_factory(engine)
    try:
        # More cancellations than the pool has connections, overflow included.
        for _ in range(2 * POOL_SIZE + 1):
            entering.clear()
            uow = SqlUnitOfWork(sessions, uuid.uuid4(), uuid.uuid4(), UnitOfWorkOptions())
            task = asyncio.create_task(uow.__aenter__())
            await entering.wait()
            task.cancel()  # while the statement is under way
            with pytest.raises(asyncio.CancelledError):
                await task
            assert pool.checkedout() == 0
        async with engine.connect() as conn:  # the pool still serves
            assert await conn.scalar(text("SELECT 1")) == 1
    finally:
        await engine.dispose()
