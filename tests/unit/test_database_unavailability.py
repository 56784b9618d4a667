"""Which database errors mean "cannot serve right now" (SERVICE_UNAVAILABLE, retryable):
statements the server gave up on (timeout, lock wait, deadlock) included, whether
SQLAlchemy reported them or the driver did; a refused statement is not."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy.exc import DBAPIError

from infrastructure.database.driver import driver_unavailable
from infrastructure.database.uow import is_unavailable


class _AdaptedError(Exception):
    """What SQLAlchemy's asyncpg dialect puts in DBAPIError.orig: the SQLSTATE as a field."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def _through_sqlalchemy(sqlstate: str) -> DBAPIError:
    return DBAPIError("SELECT 1", None, _AdaptedError(sqlstate))


@pytest.mark.parametrize(
    ("sqlstate", "driver_error"),
    [
        ("57014", asyncpg.QueryCanceledError),
        ("55P03", asyncpg.LockNotAvailableError),
        ("40P01", asyncpg.DeadlockDetectedError),
    ],
)
def test_a_statement_the_server_gave_up_on_is_unavailable(
    sqlstate: str, driver_error: type[asyncpg.PostgresError]
) -> None:
    assert driver_error.sqlstate == sqlstate
    assert is_unavailable(_through_sqlalchemy(sqlstate))
    assert driver_unavailable(driver_error("gave up"))
    assert is_unavailable(driver_error("gave up"))


def test_a_refused_statement_is_not() -> None:
    assert not is_unavailable(_through_sqlalchemy("42P01"))  # undefined table: a bug
    assert not driver_unavailable(asyncpg.UndefinedTableError("no such table"))
    assert not driver_unavailable(asyncpg.UniqueViolationError("duplicate"))
