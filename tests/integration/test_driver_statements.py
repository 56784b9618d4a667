"""Statements sent straight through asyncpg (driver.py) run in the unit of work's
transaction, as the tenant, and a lost connection is still SERVICE_UNAVAILABLE."""

from __future__ import annotations

import pytest

from domain.errors import ServiceUnavailable
from infrastructure.container import Container
from infrastructure.database.driver import driver_connection
from infrastructure.database.uow import SqlUnitOfWork
from infrastructure.embedded import EmbeddedPostgres
from tests.helpers import terminate_backend
from tests.integration.test_chunk_search import DIMENSIONS, member, unit


async def test_driver_statements_run_as_the_tenant_inside_the_transaction(
    container: Container,
) -> None:
    principal = await member(container)
    async with container.uow_factory.tenant(principal) as uow:
        assert isinstance(uow, SqlUnitOfWork)
        driver = await driver_connection(uow.session)
        row = await driver.fetchrow(
            "SELECT current_user, current_setting('app.organization_id'),"
            " now() = statement_timestamp()"
        )
        assert row is not None
        assert row[0] == container.settings.database_app_role
        assert row[1] == str(principal.organization_id)
        # now() is the transaction's start, not this statement's: the same transaction.
        assert row[2] is False


async def test_a_session_whose_transaction_has_not_begun_is_refused(
    container: Container,
) -> None:
    async with container.session_factory() as session, session.begin():
        # SQLAlchemy sends BEGIN with the first statement; none was sent yet.
        with pytest.raises(RuntimeError, match="inside a transaction"):
            await driver_connection(session)


async def test_a_connection_lost_during_a_search_is_service_unavailable(
    container: Container, embedded_postgres: EmbeddedPostgres
) -> None:
    principal = await member(container)
    with pytest.raises(ServiceUnavailable):
        async with container.uow_factory.tenant(principal) as uow:
            assert isinstance(uow, SqlUnitOfWork)
            await terminate_backend(
                await driver_connection(uow.session), embedded_postgres.admin_dsn
            )
            await uow.search.nearest(unit([1.0] * DIMENSIONS), 5, None)
    # The pool recovers: the next search works on another connection.
    async with container.uow_factory.tenant(principal) as uow:
        assert await uow.search.nearest(unit([1.0] * DIMENSIONS), 5, None) == []
