"""The async engine and session factory, built once per process.

A database that is down, restarting or full must surface as "unavailable" (the
unit of work turns that into SERVICE_UNAVAILABLE), never as an unexpected error,
and the pool must drop the dead connections so it recovers by itself afterwards.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
from sqlalchemy import event, text
from sqlalchemy.engine import Dialect, ExceptionContext
from sqlalchemy.exc import DisconnectionError, ProgrammingError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from infrastructure.database.migrate import head_revision, known_revisions
from infrastructure.database.pgvector_version import installed_version, version_problem

CONNECT_TIMEOUT_SECONDS = 5
# SQLSTATEs that mean "this server cannot serve you right now": connection exceptions
# (class 08), shutting down / crashed / starting up (57P01-57P03), too many connections.
_UNAVAILABLE_STATES = frozenset({"57P01", "57P02", "57P03", "53300"})


# SQLSTATEs of a statement the server gave up on, on a connection that stays usable,
# which succeeds when tried again once the load or the lock holder has gone: a statement
# timeout (or an administrator's cancel), a lock wait timeout, a deadlock. A client's own
# cancellation never arrives as one: the driver raises CancelledError in the cancelled
# task instead.
_RETRYABLE_STATES = frozenset({"57014", "55P03", "40P01"})


def unavailable_state(sqlstate: object) -> bool:
    return isinstance(sqlstate, str) and (
        sqlstate.startswith("08") or sqlstate in _UNAVAILABLE_STATES
    )


def retryable_state(sqlstate: object) -> bool:
    """True for the SQLSTATEs of a statement the server could not serve this time (a
    timeout, a lock wait, a deadlock): unavailable for now, not a bug (unlike
    :func:`unavailable_state`, the connection is fine)."""
    return isinstance(sqlstate, str) and sqlstate in _RETRYABLE_STATES


def _connecting(
    operational_error: Callable[..., Exception],
) -> Callable[..., Awaitable[asyncpg.Connection]]:
    """asyncpg.connect, raising the driver's OperationalError when the server is unreachable.

    asyncpg raises plain OSErrors (no socket, connection refused) and TimeoutError,
    which SQLAlchemy passes through unwrapped, and "cannot connect now" as a generic
    driver error; both would otherwise read as bugs.
    """

    async def connect(*args: object, **kwargs: object) -> asyncpg.Connection:
        try:
            return await asyncpg.connect(*args, **kwargs)
        except (TimeoutError, OSError) as exc:
            raise operational_error(f"database unreachable: {type(exc).__name__}", exc) from exc
        except asyncpg.PostgresError as exc:
            if unavailable_state(exc.sqlstate):
                raise operational_error(f"database unavailable: {exc.sqlstate}", exc) from exc
            raise

    return connect


def _install_unavailability_handling(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "do_connect")
    def _translating_connect(
        dialect: Dialect, record: object, cargs: object, cparams: dict[str, object]
    ) -> None:
        cparams["async_creator_fn"] = _connecting(dialect.loaded_dbapi.OperationalError)

    @event.listens_for(engine.sync_engine, "checkout")
    def _closed_connection(
        dbapi_connection: object, record: ConnectionPoolEntry, proxy: PoolProxiedConnection
    ) -> None:
        # Instead of pool_pre_ping's three round trips per checkout (BEGIN, a ping,
        # ROLLBACK: ~0.5 ms of a search's CPU): the driver notices at once when the
        # server closes a connection (a restart, an idle timeout, a terminated backend),
        # so a closed one is swapped for a new one here; one that breaks in use is a
        # disconnect (below), discarded with the request answered SERVICE_UNAVAILABLE.
        driver = record.driver_connection
        if isinstance(driver, asyncpg.Connection) and driver.is_closed():
            raise DisconnectionError("connection closed by the server")

    @event.listens_for(engine.sync_engine, "handle_error")
    def _server_going_away(context: ExceptionContext) -> None:
        # e.g. "terminating connection due to administrator command" mid-query: the
        # connection is dead, so the pool must discard it (and the error is a disconnect).
        if unavailable_state(getattr(context.original_exception, "sqlstate", None)):
            context.is_disconnect = True


def connect_arguments(statement_timeout_ms: int) -> dict[str, object]:
    """asyncpg.connect's arguments beyond the URL, for every connection we open."""
    return {
        "timeout": CONNECT_TIMEOUT_SECONDS,
        "server_settings": {
            "statement_timeout": str(statement_timeout_ms),
            "idle_in_transaction_session_timeout": str(statement_timeout_ms * 4),
            "application_name": "knowledge-foundry",
            "timezone": "UTC",
        },
    }


def create_engine(url: str, pool_size: int, statement_timeout_ms: int) -> AsyncEngine:
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=False,  # see _closed_connection
        pool_recycle=1_800,
        # Statement parameters (password hashes, tokens) never appear in errors or logs.
        hide_parameters=True,
        connect_args=connect_arguments(statement_timeout_ms),
    )
    _install_unavailability_handling(engine)
    return engine


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


async def migrations_at_head(engine: AsyncEngine) -> bool:
    """True when the database's Alembic revision is the newest one in the code."""
    async with engine.connect() as conn:
        current = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
    return current is not None and current == head_revision()


async def schema_readiness(engine: AsyncEngine) -> str:
    """'ok' when this code can run on the database's schema, else why not.

    A revision this code does not know was applied by a newer release: ready, so
    during a rolling upgrade the old replicas keep serving once the new release has
    migrated (migrations only add, so old code keeps working on the new schema).
    Nor is a pgvector older than this code needs ready (``pgvector_version.py``).
    """
    vector = None
    try:
        async with engine.connect() as conn:
            vector = await installed_version(conn)  # first: the next may fail the transaction
            current = await conn.scalar(text("SELECT version_num FROM alembic_version"))
    except ProgrammingError:  # no alembic_version table at all
        current = None
    problem = version_problem(vector)
    if problem is not None:
        return problem
    head, known = known_revisions()
    if current == head:
        return "ok"
    if current is None:
        return "not migrated: run foundry migrate"
    if current in known:
        return f"migrations behind: at {current}, this code needs {head} (run foundry migrate)"
    return "ok"
