"""The asyncpg connection under a session, for the statements of the search hot path.

A search runs three statements. Through ``AsyncSession.execute`` each pays for
SQLAlchemy's execution context, result wrapping and a greenlet switch: 0.9 to 1.2 ms
of CPU for the two search statements of one question, against 0.7 to 0.9 ms for the
same statements sent straight through the driver (micro-benchmark, 300 questions,
three alternating rounds). Inside a unit of work those statements therefore go to
the session's own asyncpg connection, in the transaction the unit of work began
(same tenant settings, same row-level security), prepared once per connection by
asyncpg's statement cache. Searches themselves use ``reader.py``, which leaves
the session out altogether.

SQLAlchemy does not see these calls, so it cannot translate their errors:
:func:`driver_unavailable` recognises the driver's own "the database cannot
serve you now" errors, which the unit of work turns into SERVICE_UNAVAILABLE as
it does for SQLAlchemy's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from infrastructure.database.engine import retryable_state, unavailable_state

# Where a repository gets its asyncpg connection: a session's (driver_connection) or
# a read-only transaction's (reader.py).
ConnectionSource = Callable[[], Awaitable[asyncpg.Connection]]


async def driver_connection(session: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection of the session's transaction, which must be under way.

    SQLAlchemy sends BEGIN with its first statement, not before: the unit of work's
    tenant settings are that statement. A statement sent before it would run in a
    transaction of its own, without the tenant's role and settings, so that is refused.
    """
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver = raw.driver_connection
    if not isinstance(driver, asyncpg.Connection):
        raise TypeError(f"expected an asyncpg connection, got {type(driver).__name__}")
    if not driver.is_in_transaction():
        raise RuntimeError("driver statements run only inside a transaction under way")
    return driver


def driver_unavailable(exc: BaseException) -> bool:
    """True for an asyncpg error meaning the database cannot serve requests right now:
    the ones the unit of work reports as unavailable (see ``uow.is_unavailable``), a
    statement that timed out, waited too long for a lock or deadlocked included."""
    if isinstance(exc, asyncpg.InterfaceError):  # e.g. the connection is closed
        return True
    if not isinstance(exc, asyncpg.PostgresError):
        return False
    sqlstate = getattr(exc, "sqlstate", None)
    return unavailable_state(sqlstate) or retryable_state(sqlstate)
