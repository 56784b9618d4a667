"""Ports: what the domain needs from the outside world, as Protocols.

Adapters live in ``infrastructure``; the domain never imports them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from enum import StrEnum
from types import TracebackType
from typing import Protocol, Self
from uuid import UUID

from domain.chats.ports import ChatRepository, ChatTurnWriter, MessageRepository
from domain.entities import (
    ApiKey,
    ApiKeyPage,
    AuditEntry,
    AuditPage,
    Document,
    IssuedAccessToken,
    Member,
    Membership,
    Organization,
    OrganizationMembership,
    Principal,
    RefreshTokenRecord,
    Role,
    User,
    UserCredentials,
)
from domain.ingestion.ports import ChunkRepository, DocumentRepository, MaintenanceRepository
from domain.retrieval.ports import ChunkSearch


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class PasswordHasher(Protocol):
    """Slow, salted password hashing (argon2id in production)."""

    async def hash(self, password: str) -> str: ...

    async def verify(self, password_hash: str, password: str) -> bool:
        """True when ``password`` matches; never raises for a mismatch."""
        ...

    async def verify_dummy(self, password: str) -> None:
        """Spend the same time as :meth:`verify` for an unknown account."""
        ...

    def needs_rehash(self, password_hash: str) -> bool: ...


class AccessTokenCodec(Protocol):
    """Signs and checks short-lived access tokens."""

    def issue(self, principal: Principal) -> IssuedAccessToken: ...

    def decode(self, token: str) -> tuple[Principal, datetime]:
        """The principal and the issue time; raises Unauthenticated/TokenExpired."""
        ...


class SessionRevocations(Protocol):
    """Shared (cross-process) record of sessions whose access tokens must stop working."""

    async def revoke(self, session_ids: Sequence[UUID]) -> None:
        """Every access token of these sessions is rejected from now on."""
        ...

    async def require_refresh(self, session_ids: Sequence[UUID]) -> None:
        """Access tokens issued up to now are rejected; refreshed ones work."""
        ...

    async def check(self, session_id: UUID, issued_at: datetime) -> None:
        """Raise Unauthenticated or TokenExpired when the token was revoked."""
        ...

    async def announce(self, session_ids: Sequence[UUID]) -> None:
        """Tell every API process these sessions changed (``revoke`` and
        ``require_refresh`` announce by themselves; API keys, checked in the database,
        only need this). Best effort: never raises."""
        ...

    def changed_since(self, session_id: UUID, moment: float) -> bool:
        """Whether this process heard, at ``moment`` (a ``time.monotonic()`` reading) or
        later, that the session was revoked or must refresh. Best effort: a notice can
        be lost, so a long-lived stream still re-checks its session now and then."""
        ...


class UserRepository(Protocol):
    async def add(self, user: User, password_hash: str) -> None: ...

    async def get(self, user_id: UUID) -> User | None: ...

    async def get_many(self, user_ids: Sequence[UUID]) -> list[User]: ...

    async def find_credentials(self, email: str, *, lock: bool = False) -> UserCredentials | None:
        """``lock``: the user's row is locked until the transaction ends (a log-in's last
        look: a password change waits for it, or it waits for the change)."""
        ...

    async def find_by_email(self, email: str) -> User | None: ...

    async def set_password_hash(self, user_id: UUID, password_hash: str) -> None: ...

    async def find_credentials_by_id(self, user_id: UUID) -> UserCredentials | None: ...

    async def replace_password_hash(self, user_id: UUID, expected_hash: str, new_hash: str) -> bool:
        """Set the hash only if it is still ``expected_hash`` (compare-and-set; the row
        stays locked until commit); False when it changed meanwhile."""
        ...


class OrganizationRepository(Protocol):
    async def add(self, organization: Organization) -> None: ...

    async def get(self, organization_id: UUID) -> Organization | None: ...

    async def get_many(self, organization_ids: Sequence[UUID]) -> list[Organization]: ...

    async def lock(self, organization_id: UUID) -> None:
        """Serialise membership changes of one organisation until commit."""
        ...

    async def hold(self, organization_id: UUID) -> None:
        """Keep the organisation's membership changes (which ``lock`` it) waiting until
        commit, without holders waiting for each other: what starts a session from a
        membership holds it, so a removal or role change sees that session."""
        ...


class MembershipRepository(Protocol):
    async def add(self, membership: Membership) -> None: ...

    async def get(self, user_id: UUID, organization_id: UUID) -> Membership | None: ...

    async def list_for_user(self, user_id: UUID) -> list[OrganizationMembership]:
        """The user's organisations, oldest membership first."""
        ...

    async def list_members(self, organization_id: UUID) -> list[Member]: ...

    async def count_admins(self, organization_id: UUID) -> int: ...

    async def set_role(self, user_id: UUID, organization_id: UUID, role: Role) -> None: ...

    async def remove(self, user_id: UUID, organization_id: UUID) -> None: ...


class RefreshTokenRepository(Protocol):
    async def add(
        self, record: RefreshTokenRecord, token_hash: str, created_at: datetime
    ) -> None: ...

    async def organization_of(self, token_hash: str) -> UUID | None:
        """The organisation of the token's session (no lock taken)."""
        ...

    async def find_for_update(self, token_hash: str) -> RefreshTokenRecord | None:
        """The token row, locked until commit so two refreshes cannot both win."""
        ...

    async def mark_used(self, token_id: UUID, at: datetime) -> None: ...

    async def revoke_family(self, family_id: UUID, at: datetime) -> list[UUID]:
        """Revoke a session and every session switched to from it, however many switches
        away, including tokens they were issued while this ran: their tokens that can still
        be redeemed (used ones are refused as replays anyway). Returns the family ids of the
        sessions it revoked (none when all had ended)."""
        ...

    async def revoke_for_member(
        self, user_id: UUID, organization_id: UUID, at: datetime, *, active_since: datetime
    ) -> list[UUID]:
        """Revoke the sessions of a user in one organisation that can still act, as
        ``live_families_for_member(now=at, active_since=active_since)`` finds them;
        returns their family ids."""
        ...

    async def live_families_for_member(
        self,
        user_id: UUID,
        organization_id: UUID,
        *,
        now: datetime | None = None,
        active_since: datetime | None = None,
    ) -> list[UUID]:
        """Sessions of a user in one organisation whose newest token is unused and
        unrevoked and that can still act: its token is redeemable after ``now``, or it
        was issued after ``active_since`` (with an access token that may still be
        valid). Either bound left out does not count; both left out: every session
        whose newest token is unused and unrevoked, however long ago it expired."""
        ...

    async def revoke_for_user(
        self, user_id: UUID, at: datetime, *, active_since: datetime, keep_family: UUID
    ) -> list[UUID]:
        """Revoke the user's sessions in every organisation that can still act (as
        ``revoke_for_member`` finds them in one), except the session ``keep_family``,
        including tokens a refresh committed while this ran; returns their family ids."""
        ...

    async def delete_ended(
        self, started_before: datetime, expired_before: datetime, limit: int
    ) -> int:
        """Delete up to ``limit`` tokens of sessions started before ``started_before``
        that expired before ``expired_before`` (any organisation: system transactions
        only); returns how many."""
        ...


class AuditLog(Protocol):
    async def record(self, entry: AuditEntry, at: datetime) -> None: ...

    async def page(
        self, first: int, after: tuple[datetime, UUID] | None, action: str | None
    ) -> AuditPage:
        """The current organisation's entries, newest first (keyset paging)."""
        ...


class ApiKeyRepository(Protocol):
    async def add(self, key: ApiKey, key_hash: str) -> None: ...

    async def get(self, key_id: UUID) -> ApiKey | None: ...

    async def find_by_hash(self, key_hash: str) -> ApiKey | None:
        """Any organisation's key with this hash (system transactions only)."""
        ...

    async def count_active(self, now: datetime) -> int:
        """Unrevoked, unexpired keys of the current organisation."""
        ...

    async def page(self, first: int, after: tuple[datetime, UUID] | None) -> ApiKeyPage: ...

    async def revoke(self, key_id: UUID, at: datetime) -> ApiKey | None:
        """Revoke the key (a no-op when already revoked); None when there is no such key."""
        ...

    async def touch(self, key_id: UUID, at: datetime, not_since: datetime) -> None:
        """Set last_used_at unless it is already later than ``not_since``."""
        ...

    async def revoke_created_by(
        self, user_id: UUID, roles: Collection[Role], at: datetime
    ) -> list[ApiKey]:
        """Revoke the current organisation's live keys that ``user_id`` created with one of
        ``roles``; returns the keys this call revoked."""
        ...


class UnitOfWork(Protocol):
    """One transaction. Leaving the block without :meth:`commit` rolls back."""

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
    """True once the database transaction has committed (even if an after-commit action failed)."""

    def on_commit(self, action: Callable[[], Awaitable[None]]) -> None:
        """Run ``action`` after a successful commit (jobs, events); dropped on rollback."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def commit(self) -> None: ...


class DocumentReader(Protocol):
    async def get_many(self, document_ids: Sequence[UUID]) -> list[Document]:
        """The organisation's documents with these ids (deleted ones too), in no order."""
        ...


class TenantReader(Protocol):
    """A read-only transaction of one organisation for the hot read path (search and
    the hits' documents): the same tenant isolation as a unit of work, less overhead."""

    search: ChunkSearch
    documents: DocumentReader

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class UnitOfWorkFactory(Protocol):
    def reader(self, principal: Principal) -> TenantReader:
        """A read-only transaction that sees only the principal's organisation's rows."""
        ...

    def chat_turn(self, principal: Principal) -> ChatTurnWriter:
        """A transaction of the principal's (a user) writing one turn of a chat."""
        ...

    def system(self) -> UnitOfWork:
        """A transaction outside any tenant (sign-up, log-in, token refresh)."""
        ...

    def tenant(self, principal: Principal) -> UnitOfWork:
        """A transaction that sees only the principal's organisation's rows."""
        ...

    def organization(self, organization_id: UUID) -> UnitOfWork:
        """A tenant transaction on behalf of the system (workers), for one organisation."""
        ...


class Budget(StrEnum):
    """What a rate limit counts; settings name limits after these values."""

    LOGIN_IP = "login_ip"
    LOGIN_EMAIL = "login_email"
    SIGNUP_IP = "signup_ip"
    SIGNUP_EMAIL = "signup_email"
    SESSION_IP = "session_ip"
    SESSION_USER = "session_user"
    UPLOAD_ORGANIZATION = "upload_org"
    ASK_USER = "ask_user"
    SEARCH_USER = "search_user"
    REPROCESS_ORGANIZATION = "reprocess_org"
    CHATS_USER = "chats_user"
    MEMBERS_USER = "members_user"
    DOWNLOAD_USER = "download_user"
    # Concurrency limits: slots held while something stays open, not a rate.
    WEBSOCKETS_USER = "ws_connections_user"
    SUBSCRIPTIONS_USER = "subscriptions_user"


class RateLimiter(Protocol):
    """Budgets shared by every API process (rates and concurrent slots)."""

    async def hit(self, budget: Budget, key: str, role: Role | None = None, cost: int = 1) -> None:
        """Spend ``cost`` from ``key``'s budget; raise RateLimited when it is spent
        (ServiceUnavailable for sign-in budgets when the store cannot be asked)."""
        ...

    def hold(
        self, budget: Budget, key: str, role: Role | None = None
    ) -> AbstractAsyncContextManager[None]:
        """Hold one of ``key``'s concurrent slots while the block runs; entering raises
        RateLimited when all are taken."""
        ...
