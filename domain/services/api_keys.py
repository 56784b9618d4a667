"""API keys for server-to-server clients: created by admins, shown once, stored hashed.

A key authenticates as a principal of its organisation with its role but no
user: it can use documents and search as its role allows, but it has no
profile (``me``), owns no chats, and cannot manage members or other keys.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from domain.entities import (
    ApiKey,
    ApiKeyPage,
    AuditEntry,
    CreatedApiKey,
    Principal,
    Role,
)
from domain.errors import Forbidden, NotFound, Unauthenticated, ValidationFailed
from domain.ports import Clock, SessionRevocations, UnitOfWork, UnitOfWorkFactory
from domain.services.cursors import decode_cursor
from domain.services.roles import confirm_role, require_role
from domain.validation import clean_name

API_KEY_PREFIX = "kf_"
"""Every key starts with this, so a bearer token is told apart from a JWT at a glance."""

DISPLAY_PREFIX_CHARS = 12
MAX_API_KEY_LENGTH = 100
MAX_API_KEYS_PAGE = 100


def is_api_key(token: str) -> bool:
    return token.startswith(API_KEY_PREFIX)


def hash_api_key(key: str) -> str:
    """SHA-256 is right here: keys carry 256 random bits, so unlike passwords they
    cannot be guessed offline and need no slow, salted hash; a fast one keeps
    every authenticated request cheap."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class ApiKeyOptions:
    max_active_per_organization: int = 50
    last_used_interval: timedelta = timedelta(minutes=1)


def key_principal(key: ApiKey) -> Principal:
    """A key acts for its organisation with its role; it is nobody's session."""
    return Principal(
        user_id=key.id,
        organization_id=key.organization_id,
        role=key.role,
        session_id=key.id,
        api_key_id=key.id,
    )


def require_user(principal: Principal, action: str) -> None:
    """Refuse API keys for actions that belong to a person."""
    if principal.api_key_id is not None:
        raise Forbidden(f"API keys cannot {action}; use a user session.")


def _future_utc(expires_at: datetime, now: datetime) -> datetime:
    """``expires_at`` in UTC; refuses a naive, past or unrepresentable time."""
    invalid = ValidationFailed(
        "expiresAt must be a future time with a UTC offset.", field="expiresAt"
    )
    if expires_at.tzinfo is None or expires_at <= now:
        raise invalid
    try:
        return expires_at.astimezone(UTC)
    except OverflowError as exc:  # a time near year 9999 whose UTC is past it
        raise invalid from exc


class ApiKeyService:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        clock: Clock,
        options: ApiKeyOptions,
        revocations: SessionRevocations,
    ) -> None:
        self._uow_factory = uow_factory
        self._clock = clock
        self._options = options
        self._revocations = revocations

    async def create(
        self,
        principal: Principal,
        name: str,
        role: Role,
        expires_at: datetime | None,
        ip: str | None,
    ) -> CreatedApiKey:
        """A new key; the plaintext is in the result and nowhere else, ever."""
        require_role(principal, Role.ADMIN)
        require_user(principal, "create API keys")
        cleaned = clean_name(name, "name")
        now = self._clock.now()
        if expires_at is not None:
            expires_at = _future_utc(expires_at, now)  # every time the API returns is UTC
        plaintext = API_KEY_PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(
            id=uuid4(),
            organization_id=principal.organization_id,
            created_by=principal.user_id,
            name=cleaned,
            key_prefix=plaintext[:DISPLAY_PREFIX_CHARS],
            role=role,
            created_at=now,
            last_used_at=None,
            expires_at=expires_at,
            revoked_at=None,
        )
        async with self._uow_factory.tenant(principal) as uow:
            # Serialised with membership changes: a removal or demotion of the caller
            # either shows in confirm_admin or waits, then revokes this key with the
            # others. And with other creations, so the count below holds.
            await uow.organizations.lock(principal.organization_id)
            await confirm_admin(uow, principal)
            limit = self._options.max_active_per_organization
            if await uow.api_keys.count_active(now) >= limit:
                raise ValidationFailed(
                    f"An organisation can have at most {limit} active API keys; revoke one first.",
                    field="name",
                )
            await uow.api_keys.add(key, hash_api_key(plaintext))
            details = {"name": key.name, "role": role.value, "prefix": key.key_prefix}
            if expires_at is not None:
                details["expires_at"] = expires_at.isoformat()
            await _audit_key(
                uow, principal.actor_user_id, "api_key.created", key, details, ip=ip, now=now
            )
            await uow.commit()
        return CreatedApiKey(key=plaintext, api_key=key)

    async def list(self, principal: Principal, first: int, after: str | None) -> ApiKeyPage:
        require_role(principal, Role.ADMIN)
        if not 0 <= first <= MAX_API_KEYS_PAGE:
            raise ValidationFailed(
                f"first must be between 0 and {MAX_API_KEYS_PAGE}.", field="first"
            )
        cursor = decode_cursor(after) if after else None
        async with self._uow_factory.tenant(principal) as uow:
            await confirm_admin(uow, principal)
            return await uow.api_keys.page(first, cursor)

    async def revoke(self, principal: Principal, key_id: UUID, ip: str | None) -> ApiKey:
        """Revoke a key; the next request with it is refused. Revoking twice is a no-op."""
        require_role(principal, Role.ADMIN)
        require_user(principal, "revoke API keys")
        now = self._clock.now()
        async with self._uow_factory.tenant(principal) as uow:
            await confirm_admin(uow, principal)
            key = await uow.api_keys.revoke(key_id, now)
            if key is None:
                raise NotFound("No such API key.")
            if key.revoked_at == now:
                await _audit_revocation(uow, principal.actor_user_id, key, ip, now)
            await uow.commit()
        # Streams opened with the key end before their next event, not at a later check.
        await self._revocations.announce([key.id])
        return key

    async def authenticate(self, key: str) -> Principal:
        """The principal of a live key. Every call reads the key, so revocation is immediate."""
        # Keys are ASCII (``token_urlsafe``); anything else cannot even be hashed as
        # UTF-8 when it holds a lone surrogate, which a socket's JSON payload can carry.
        if not is_api_key(key) or len(key) > MAX_API_KEY_LENGTH or not key.isascii():
            raise Unauthenticated("The API key is not valid.")
        now = self._clock.now()
        # Looked up by the hash of the whole key only: nothing depends on how many
        # leading characters of a guess happen to match a real key.
        async with self._uow_factory.system() as uow:
            found = await uow.api_keys.find_by_hash(hash_api_key(key))
            if found is None or not found.usable_at(now):
                raise Unauthenticated("The API key is not valid, was revoked or has expired.")
            stale = now - self._options.last_used_interval
            if found.last_used_at is None or found.last_used_at <= stale:
                # At most one write per key per interval, not one per request.
                await uow.api_keys.touch(found.id, now, stale)
                await uow.commit()
        return key_principal(found)


async def confirm_admin(uow: UnitOfWork, principal: Principal) -> None:
    """The admin role, as the membership holds it now (``confirm_role``)."""
    await confirm_role(uow, principal, Role.ADMIN)


async def revoke_keys_beyond_member(
    uow: UnitOfWork,
    principal: Principal,
    member_id: UUID,
    *,
    role: Role | None,
    reason: str,
    ip: str | None,
    now: datetime,
) -> list[UUID]:
    """A key never outlives its creator's authority: revoke the keys ``member_id`` created
    in this organisation with a role above ``role`` (every key when ``role`` is None, the
    member having left), each with an audit entry saying why. The revoked keys' ids, to
    announce once committed."""
    return await revoke_keys_created_by(
        uow,
        member_id,
        role=role,
        reason=reason,
        actor_user_id=principal.actor_user_id,
        ip=ip,
        now=now,
    )


async def revoke_keys_created_by(
    uow: UnitOfWork,
    creator_id: UUID,
    *,
    role: Role | None,
    reason: str,
    actor_user_id: UUID | None,
    ip: str | None,
    now: datetime,
) -> list[UUID]:
    """Revoke the live keys ``creator_id`` created in the organisation of ``uow`` (a tenant
    transaction) with a role above ``role`` (every one when ``role`` is None), each audited
    there as ``api_key.revoked`` with ``reason``, by ``actor_user_id`` (None: the system,
    an operator's command). Keys already revoked are left as they are, so running it
    again revokes only what is left. The revoked keys' ids, to
    :meth:`SessionRevocations.announce` once committed: open streams authenticated by
    them end before their next event (requests over HTTP read the key, so are refused
    from the commit on)."""
    beyond = [r for r in Role if role is None or r.rank > role.rank]
    revoked = await uow.api_keys.revoke_created_by(creator_id, beyond, now)
    for key in revoked:
        await _audit_revocation(uow, actor_user_id, key, ip, now, reason=reason)
    return [key.id for key in revoked]


async def _audit_revocation(
    uow: UnitOfWork,
    actor_user_id: UUID | None,
    key: ApiKey,
    ip: str | None,
    now: datetime,
    *,
    reason: str | None = None,
) -> None:
    details = {"name": key.name, "prefix": key.key_prefix}
    if reason is not None:
        details["reason"] = reason
    await _audit_key(uow, actor_user_id, "api_key.revoked", key, details, ip=ip, now=now)


async def _audit_key(
    uow: UnitOfWork,
    actor_user_id: UUID | None,
    action: str,
    key: ApiKey,
    details: dict[str, str],
    *,
    ip: str | None,
    now: datetime,
) -> None:
    # The key's own organisation: the tenant transaction's, which row-level security holds to.
    await uow.audit.record(
        AuditEntry(
            action,
            key.organization_id,
            actor_user_id,
            target=f"api_key:{key.id}",
            ip=ip,
            details=details,
        ),
        now,
    )
