"""SQLAlchemy unit of work: one transaction, tenant-scoped through row-level security."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from types import TracebackType
from typing import Self
from uuid import UUID

import structlog
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.chats.ports import ChatRepository, MessageRepository
from domain.entities import Principal
from domain.errors import ServiceUnavailable
from domain.ingestion.ports import ChunkRepository, DocumentRepository, MaintenanceRepository
from domain.ports import (
    ApiKeyRepository,
    AuditLog,
    MembershipRepository,
    OrganizationRepository,
    RefreshTokenRepository,
    UserRepository,
)
from domain.retrieval.ports import ChunkSearch
from infrastructure.database.chat_turns import SqlChatTurn
from infrastructure.database.driver import driver_connection, driver_unavailable
from infrastructure.database.engine import retryable_state
from infrastructure.database.reader import ReaderPool, SqlTenantReader
from infrastructure.database.repositories.api_keys import SqlApiKeyRepository
from infrastructure.database.repositories.audit import SqlAuditLog
from infrastructure.database.repositories.chats import SqlChatRepository, SqlMessageRepository
from infrastructure.database.repositories.chunk_search import SqlChunkSearch
from infrastructure.database.repositories.chunks import SqlChunkRepository
from infrastructure.database.repositories.documents import (
    SqlDocumentRepository,
    SqlMaintenanceRepository,
)
from infrastructure.database.repositories.memberships import SqlMembershipRepository
from infrastructure.database.repositories.organizations import SqlOrganizationRepository
from infrastructure.database.repositories.refresh_tokens import SqlRefreshTokenRepository
from infrastructure.database.repositories.users import SqlUserRepository
from infrastructure.database.tenant_settings import NAMES, set_config_select, tenant_values

log = structlog.get_logger("foundry.uow")

# One round trip: switch to the non-bypassing app role, pin the tenant and set up
# filtered HNSW scans, for this transaction only (tenant_settings.py; the read-only
# transactions of reader.py make the same settings).
_ENTER_TENANT = text(set_config_select([f":v{index}" for index in range(len(NAMES))]))


def is_unavailable(exc: BaseException) -> bool:
    """True for failures that mean the database cannot serve right now: it cannot be
    reached, every pooled connection stayed busy for the pool's whole timeout, or a
    statement timed out, waited too long for a lock or deadlocked (SQLAlchemy reports
    those as a plain DBAPIError)."""
    if isinstance(exc, OperationalError | InterfaceError | PoolTimeout):
        return True
    if isinstance(exc, DBAPIError) and (
        exc.connection_invalidated or retryable_state(getattr(exc.orig, "sqlstate", None))
    ):
        return True
    return isinstance(exc, ConnectionError | TimeoutError) or driver_unavailable(exc)


@dataclass(frozen=True, slots=True)
class UnitOfWorkOptions:
    app_role: str = "foundry_app"
    hnsw_ef_search: int = 100
    fulltext_max_ranked: int = 500


class SqlUnitOfWork:
    users: UserRepository
    organizations: OrganizationRepository
    memberships: MembershipRepository
    refresh_tokens: RefreshTokenRepository
    audit: AuditLog
    api_keys: ApiKeyRepository
    documents: DocumentRepository
    chunks: ChunkRepository
    maintenance: MaintenanceRepository
    search: ChunkSearch
    chats: ChatRepository
    messages: MessageRepository
    committed: bool

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        organization_id: UUID | None,
        user_id: UUID | None,
        options: UnitOfWorkOptions,
    ) -> None:
        self._sessions = sessions
        self._organization_id = organization_id
        self._user_id = user_id
        self._options = options
        self.committed = False
        self._after_commit: list[Callable[[], Awaitable[None]]] = []

    def on_commit(self, action: Callable[[], Awaitable[None]]) -> None:
        self._after_commit.append(action)

    async def __aenter__(self) -> Self:
        self.session = self._sessions()
        try:
            await self.session.begin()
            if self._organization_id is not None:
                await self.session.execute(
                    _ENTER_TENANT,
                    {
                        f"v{index}": value
                        for index, value in enumerate(
                            tenant_values(
                                self._options.app_role,
                                self._organization_id,
                                self._user_id,
                                self._options.hnsw_ef_search,
                            )
                        )
                    },
                )
        except Exception as exc:
            await self.session.close()
            if is_unavailable(exc):
                raise ServiceUnavailable("The database is unavailable; try again shortly.") from exc
            raise
        self.users = SqlUserRepository(self.session)
        self.organizations = SqlOrganizationRepository(self.session)
        self.memberships = SqlMembershipRepository(self.session)
        self.refresh_tokens = SqlRefreshTokenRepository(self.session)
        self.audit = SqlAuditLog(self.session, self._organization_id)
        self.api_keys = SqlApiKeyRepository(self.session, self._organization_id)
        self.documents = SqlDocumentRepository(self.session, self._organization_id)
        self.chunks = SqlChunkRepository(self.session, self._organization_id)
        self.maintenance = SqlMaintenanceRepository(self.session)
        self.search = SqlChunkSearch(
            partial(driver_connection, self.session),
            self._organization_id,
            self._options.fulltext_max_ranked,
        )
        self.chats = SqlChatRepository(self.session, self._organization_id, self._user_id)
        self.messages = SqlMessageRepository(self.session, self._organization_id, self._user_id)
        return self

    async def commit(self) -> None:
        await self.session.commit()
        self.committed = True
        actions, self._after_commit = self._after_commit, []
        for action in actions:
            try:
                await action()
            except Exception:
                # The data is committed; a lost job or event is recovered by the
                # watchdog (jobs) or the next event (status), so log and go on.
                log.warning("uow.after_commit_failed", exc_info=True)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if not self.committed:
                await self.session.rollback()
        except Exception:
            # A dead connection cannot roll back; the server discards the transaction.
            if exc is None:
                raise
        finally:
            await self.session.close()
        if exc is not None and is_unavailable(exc):
            raise ServiceUnavailable("The database is unavailable; try again shortly.") from exc


class SqlUnitOfWorkFactory:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        options: UnitOfWorkOptions,
        readers: ReaderPool,
    ) -> None:
        self._sessions = sessions
        self._options = options
        self._readers = readers

    def reader(self, principal: Principal) -> SqlTenantReader:
        return SqlTenantReader(self._readers, principal)

    def chat_turn(self, principal: Principal) -> SqlChatTurn:
        return SqlChatTurn(self._readers, principal)

    def system(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(self._sessions, None, None, self._options)

    def tenant(self, principal: Principal) -> SqlUnitOfWork:
        return SqlUnitOfWork(
            self._sessions, principal.organization_id, principal.user_id, self._options
        )

    def organization(self, organization_id: UUID) -> SqlUnitOfWork:
        return SqlUnitOfWork(self._sessions, organization_id, None, self._options)
