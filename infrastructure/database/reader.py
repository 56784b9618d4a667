"""Read-only tenant transactions for the search hot path, on a small asyncpg pool
(which also carries the answers' chat writes, ``chat_turns.py``).

Every search and every answer reads the same three things in one organisation:
the nearest chunks, the full-text matches and the hits' documents. Through a
SQLAlchemy session that transaction cost about 2.5 ms of the API's CPU, twice
what the same statements cost on a bare asyncpg connection (session, pool
events, execution contexts, greenlet switches; bench/README.md, run 18). So
these reads go through a pool of their own (``database_pool_size``
connections, opened on first use), with the same connection settings as the
engine's, and the unit of work stays for everything else. The pool's connections send
the query vector in pgvector's binary format (``vector_codec.py``).

Isolation is the unit of work's: the transaction switches to the application
role, under row-level security, and pins the organisation (``uow.py``). The
first round trip both begins the transaction, read only, and makes these
settings, local to it; leaving always rolls back, and a connection that is
still inside a transaction when it goes back to the pool (a rollback that
could not run) is rolled back there or closed. After a block that ended
without an error, the rollback and the release run in the background: the
reads are done and nothing was written, so the caller answers without waiting
another round trip (1-2.5 ms of a search's server time under load, bench/README.md,
runs 25-27), and the pool hands the connection out again only once it is released.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Sequence
from types import TracebackType
from typing import Self
from uuid import UUID

import asyncpg
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.entities import Document, Principal
from domain.errors import ServiceUnavailable
from domain.ports import DocumentReader
from domain.retrieval.ports import ChunkSearch
from infrastructure.database.driver import ConnectionSource, driver_unavailable
from infrastructure.database.repositories.chunk_search import SqlChunkSearch
from infrastructure.database.repositories.documents import fetch_documents
from infrastructure.database.tenant_settings import set_config_select, tenant_values
from infrastructure.database.vector_codec import register_vector_codec

log = structlog.get_logger("foundry.reader")

_ROLE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")  # as the setting's own pattern
POOL_TIMEOUT_SECONDS = 30.0  # as SQLAlchemy's pool: every connection busy that long


def connect_target(engine: AsyncEngine) -> dict[str, object]:
    """asyncpg.connect's server and credentials, as the engine's dialect reads its URL."""
    _, target = engine.dialect.create_connect_args(engine.url)
    return dict(target)


UNAVAILABLE = "The database is unavailable; try again shortly."


def _unavailable(exc: Exception) -> bool:
    """The server cannot be reached or serve now (as ``uow.is_unavailable`` for SQLAlchemy)."""
    return isinstance(exc, OSError | TimeoutError) or driver_unavailable(exc)


def _stale_statement(exc: BaseException) -> bool:
    """A statement prepared before a schema change (an ALTER TABLE of a migration) whose
    rows changed type. asyncpg prepares it again by itself only outside a transaction;
    inside ours the transaction is lost, but asyncpg has emptied the pool's statement
    caches, so the same request tried again succeeds."""
    return isinstance(exc, asyncpg.InvalidCachedStatementError)


class ReaderPool:
    """The asyncpg pool of the read-only transactions, created on first use."""

    def __init__(
        self,
        connect: dict[str, object],
        size: int,
        *,
        app_role: str,
        hnsw_ef_search: int,
        fulltext_max_ranked: int,
        acquire_timeout: float = POOL_TIMEOUT_SECONDS,
    ) -> None:
        if not _ROLE.match(app_role):
            raise ValueError(f"invalid application role name: {app_role!r}")
        self._connect = connect
        self._size = size
        self._app_role = app_role
        self._hnsw_ef_search = int(hnsw_ef_search)
        self.fulltext_max_ranked = fulltext_max_ranked
        self._acquire_timeout = acquire_timeout
        self._pool: asyncpg.Pool | None = None
        self._creating = asyncio.Lock()
        self._releasing: set[asyncio.Task[None]] = set()
        self._closed = False

    def enter_statement(
        self, organization_id: UUID, user_id: UUID | None, *, read_only: bool = True
    ) -> str:
        """BEGIN and the tenant settings in one round trip (simple protocol, so the
        values are literals: two UUIDs, a checked role name and an int)."""
        if not isinstance(organization_id, UUID) or not isinstance(user_id, UUID | None):
            raise TypeError("the organisation and the user must be UUIDs")
        values = tenant_values(self._app_role, organization_id, user_id, self._hnsw_ef_search)
        begin = "BEGIN READ ONLY; " if read_only else "BEGIN; "
        return begin + set_config_select([f"'{value}'" for value in values])

    async def begin(self, principal: Principal, *, read_only: bool) -> asyncpg.Connection:
        """A connection inside a new transaction of the principal's organisation."""
        enter = self.enter_statement(
            principal.organization_id, principal.user_id, read_only=read_only
        )
        try:
            connection = await self.acquire()
        except Exception as exc:
            if _unavailable(exc):
                raise ServiceUnavailable(UNAVAILABLE) from exc
            raise
        try:
            await connection.execute(enter)
        except BaseException as exc:
            await self.release(connection)
            if isinstance(exc, Exception) and _unavailable(exc):
                raise ServiceUnavailable(UNAVAILABLE) from exc
            raise
        return connection

    async def end(self, connection: asyncpg.Connection | None, exc: BaseException | None) -> None:
        """End a block's transaction: nothing left to do once it committed (``None``); after a
        clean block, roll back in the background; after ``exc``, roll back now."""
        if connection is None:
            return
        if exc is None:
            self.release_later(connection)
            return
        await self._abandon(connection, exc)

    async def _abandon(self, connection: asyncpg.Connection, exc: BaseException) -> None:
        """Roll back after ``exc`` ended the block and release; ``exc`` becomes
        SERVICE_UNAVAILABLE when the database could not serve (or could not this once:
        a statement gone stale with a schema change)."""
        try:
            # A dead connection cannot roll back: the server discards the transaction,
            # and the pool replaces the connection. The block's own error is what counts.
            with contextlib.suppress(Exception):
                if not connection.is_closed():
                    await connection.execute("ROLLBACK")
        finally:
            await self.release(connection)
        if isinstance(exc, Exception) and (_unavailable(exc) or _stale_statement(exc)):
            raise ServiceUnavailable(UNAVAILABLE) from exc

    async def acquire(self) -> asyncpg.Connection:
        if self._closed:  # a pool opened now would never be closed
            raise ServiceUnavailable(UNAVAILABLE)
        pool = self._pool or await self._create()
        connection: asyncpg.Connection = await pool.acquire(timeout=self._acquire_timeout)
        return connection

    async def release(self, connection: asyncpg.Connection) -> None:
        if self._pool is not None:
            await self._pool.release(connection)

    def release_later(self, connection: asyncpg.Connection) -> None:
        """Roll back and release in the background (see the module's docstring)."""
        task = asyncio.get_running_loop().create_task(self._roll_back_and_release(connection))
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

    async def _roll_back_and_release(self, connection: asyncpg.Connection) -> None:
        try:
            if not connection.is_closed():
                await connection.execute("ROLLBACK")
        except Exception as error:  # the pool's reset rolls back again or closes it
            log.warning("reader.rollback_failed", error=repr(error))
        finally:
            try:
                await self.release(connection)
            except Exception as error:  # asyncpg has closed the connection
                log.warning("reader.release_failed", error=repr(error))

    async def _create(self) -> asyncpg.Pool:
        async with self._creating:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    min_size=0,
                    max_size=self._size,
                    init=register_vector_codec,
                    reset=_roll_back_if_open,
                    **self._connect,
                )
                log.info("reader_pool.created", max_size=self._size)
            return self._pool

    async def aclose(self) -> None:
        """Close the pool once the transactions under way have given their connections
        back (they still can meanwhile; new ones are refused as unavailable)."""
        self._closed = True
        if self._releasing:
            await asyncio.gather(*self._releasing)
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


async def _roll_back_if_open(connection: asyncpg.Connection) -> None:
    """The pool's reset on release. Our settings are local to the transaction, so a
    connection whose transaction ended holds nothing of its tenant (asyncpg's default
    reset would cost a round trip per release for what we never change)."""
    if connection.is_in_transaction():
        await connection.execute("ROLLBACK")  # on failure the pool closes the connection


class SqlTenantReader:
    """One read-only transaction of one organisation (see the module's docstring)."""

    search: ChunkSearch
    documents: DocumentReader

    def __init__(self, pool: ReaderPool, principal: Principal) -> None:
        self._pool = pool
        self._principal = principal
        self._connection: asyncpg.Connection | None = None

    async def __aenter__(self) -> Self:
        principal = self._principal
        connection = await self._pool.begin(principal, read_only=True)
        self._connection = connection
        self.search = SqlChunkSearch(
            self.connection,
            principal.organization_id,
            self._pool.fulltext_max_ranked,
            binary_vectors=True,
        )
        self.documents = SqlDocumentReader(self.connection, principal.organization_id)
        return self

    async def connection(self) -> asyncpg.Connection:
        """The transaction's connection, while inside the block."""
        if self._connection is None:
            raise RuntimeError("the reader is used outside its block")
        return self._connection

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        connection, self._connection = self._connection, None
        await self._pool.end(connection, exc)


class SqlDocumentReader:
    def __init__(self, connection: ConnectionSource, organization_id: UUID) -> None:
        self._connection = connection
        self._organization_id = organization_id

    async def get_many(self, document_ids: Sequence[UUID]) -> list[Document]:
        return await fetch_documents(await self._connection(), self._organization_id, document_ids)
