"""Changing a password: the caller's, and every other session of theirs ended with it; and
an operator's reset of a forgotten one, which ends every session of the account (and,
when asked, revokes every API key the account created)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import NoReturn
from uuid import UUID, uuid4

from domain.entities import AuditEntry, Principal
from domain.errors import InvalidCredentials, NotFound, ServiceUnavailable, ValidationFailed
from domain.ports import Clock, PasswordHasher, SessionRevocations, UnitOfWork, UnitOfWorkFactory
from domain.services.accounts import RequestOrigin
from domain.services.api_keys import require_user, revoke_keys_created_by
from domain.services.refresh_token_retention import (
    LONGEST_ACCESS_TOKEN_TTL,
    access_tokens_issued_since,
)
from domain.validation import check_password_policy, normalize_email

RESET_REVOCATION_REASON = "password_reset"
"""The ``reason`` of the ``api_key.revoked`` entries of ``reset(revoke_api_keys=True)``."""


@dataclass(frozen=True, slots=True)
class ApiKeysRevoked:
    """The API keys a reset revoked: how many, and in how many organisations. Keys revoked
    before (by an earlier run, an admin, or their creator leaving) are not counted."""

    keys: int
    organizations: int


@dataclass(frozen=True, slots=True)
class PasswordReset:
    """What an operator's reset did: whose password, how many sessions it ended, and the
    API keys it revoked (None when it was not asked to)."""

    user_id: UUID
    email: str
    sessions_ended: int
    api_keys: ApiKeysRevoked | None = None


class ApiKeysNotRevoked(ServiceUnavailable):
    """The password was reset and every session ended (committed), but the API keys of
    ``failed_organizations`` of the user's organisations could not be revoked (PostgreSQL
    unavailable, or a lock waited for too long). ``reset.api_keys`` counts the keys that
    were. Resetting again (``revoke_api_keys=True``) revokes the rest."""

    def __init__(self, reset: PasswordReset, failed_organizations: int, cause: str) -> None:
        super().__init__(
            f"The API keys could not be revoked in {failed_organizations} of the account's "
            f"organisations: {cause}"
        )
        self.reset = reset
        self.failed_organizations = failed_organizations


class PasswordService:
    def __init__(
        self,
        *,
        uow_factory: UnitOfWorkFactory,
        hasher: PasswordHasher,
        revocations: SessionRevocations,
        clock: Clock,
        access_token_ttl: timedelta = LONGEST_ACCESS_TOKEN_TTL,
    ) -> None:
        self._uow_factory = uow_factory
        self._hasher = hasher
        self._revocations = revocations
        self._clock = clock
        # Sessions whose last access token was issued longer ago than this cannot act:
        # a password change leaves them alone (see refresh_token_retention).
        self._access_token_ttl = access_token_ttl

    async def change(
        self,
        principal: Principal,
        current_password: str,
        new_password: str,
        origin: RequestOrigin,
    ) -> None:
        """Replace the caller's password and end every other session of theirs, in every
        organisation; the caller's own session goes on.

        As in log_in, argon2 runs with no connection held: the hash is read in one
        transaction, verified outside any, and replaced in another only if it is still
        the one verified (a change meanwhile is refused as INVALID_CREDENTIALS)."""
        require_user(principal, "change a password")
        async with self._uow_factory.system() as uow:
            credentials = await uow.users.find_credentials_by_id(principal.user_id)
        if credentials is None:
            raise NotFound("Your account no longer exists.")
        # Checked before argon2 runs: a refused new password costs no hashing.
        check_password_policy(new_password, credentials.user.email)
        if new_password == current_password:
            raise ValidationFailed(
                "The new password must differ from the current one.", field="newPassword"
            )
        if not await self._hasher.verify(credentials.password_hash, current_password):
            async with self._uow_factory.system() as uow:
                await self._refuse_password_change(uow, principal, origin)
        new_hash = await self._hasher.hash(new_password)
        now = self._clock.now()
        async with self._uow_factory.system() as uow:
            if not await uow.users.replace_password_hash(
                principal.user_id, credentials.password_hash, new_hash
            ):
                await self._refuse_password_change(uow, principal, origin)
            # Held, as a log-in or refresh holds them: a removal or role change in one of
            # the user's organisations either committed first or waits for this.
            memberships = await uow.memberships.list_for_user(principal.user_id)
            for organization_id in sorted({m.organization.id for m in memberships}):
                await uow.organizations.hold(organization_id)
            families = await uow.refresh_tokens.revoke_for_user(
                principal.user_id,
                now,
                active_since=access_tokens_issued_since(now, self._access_token_ttl),
                keep_family=principal.session_id,
            )
            await uow.audit.record(
                AuditEntry(
                    "auth.password_changed",
                    principal.organization_id,
                    principal.user_id,
                    target=f"user:{principal.user_id}",
                    ip=origin.ip,
                    details={"sessions_ended": str(len(families))},
                ),
                now,
            )
            # Redis first, as remove_member does: if it cannot be told, nothing is
            # committed (the password stays as it was), and a retry does it all.
            if families:
                await self._revocations.revoke(families)
            await uow.commit()

    async def reset(
        self, email: str, new_password: str, *, revoke_api_keys: bool = False
    ) -> PasswordReset:
        """An operator sets the password of the account using ``email`` (for someone who
        forgot theirs) and every session of that account ends, in every organisation:
        refresh tokens are refused and access tokens stop working. The new password
        follows the sign-up policy (WeakPassword); an unknown email is NotFound, and
        either refusal changes nothing.

        Audited as ``auth.password_reset`` with no actor (the operator is not a user), in
        each of the user's organisations so their admins see it. As in change, argon2
        runs with no connection held.

        With ``revoke_api_keys`` (the account was compromised), every live API key the
        user created is revoked too, as removing its creator from the organisation would
        revoke it: see :meth:`_revoke_api_keys`. That comes after the password and the
        sessions are committed, so that nobody can make a new key with the account once
        its keys are being revoked; revoking first would leave a window for a session to
        make one. If some organisation's keys cannot be revoked, :class:`ApiKeysNotRevoked`
        says so (the reset stands); resetting again revokes what is left."""
        try:
            email = normalize_email(email)
        except ValidationFailed:
            raise NotFound(f"No account uses {email.strip()!r}.") from None
        async with self._uow_factory.system() as uow:
            credentials = await uow.users.find_credentials(email)
        if credentials is None:
            raise NotFound(f"No account uses {email}.")
        # Checked before argon2 runs: a refused password costs no hashing.
        check_password_policy(new_password, credentials.user.email)
        new_hash = await self._hasher.hash(new_password)
        now = self._clock.now()
        async with self._uow_factory.system() as uow:
            # Locked until commit: a log-in finishing now either committed its session
            # first (and it is ended below) or waits and then sees the new hash.
            current = await uow.users.find_credentials(email, lock=True)
            if current is None:
                raise NotFound(f"No account uses {email}.")
            user_id = current.user.id
            await uow.users.set_password_hash(user_id, new_hash)
            memberships = await uow.memberships.list_for_user(user_id)
            organization_ids = sorted({m.organization.id for m in memberships})
            for organization_id in organization_ids:
                await uow.organizations.hold(organization_id)
            families = await uow.refresh_tokens.revoke_for_user(
                user_id,
                now,
                active_since=access_tokens_issued_since(now, self._access_token_ttl),
                # It spares one session: a fresh id is none of the user's.
                keep_family=uuid4(),
            )
            details = {"sessions_ended": str(len(families))}
            # An account in no organisation (every membership removed) is still audited.
            audited_in: list[UUID | None] = [*organization_ids] or [None]
            for audit_organization_id in audited_in:
                await uow.audit.record(
                    AuditEntry(
                        "auth.password_reset",
                        audit_organization_id,
                        None,
                        target=f"user:{user_id}",
                        details=details,
                    ),
                    now,
                )
            # Redis first, as change does: if it cannot be told, nothing is committed.
            if families:
                await self._revocations.revoke(families)
            await uow.commit()
        reset = PasswordReset(user_id, email, len(families))
        if not revoke_api_keys:
            return reset
        revoked, failures = await self._revoke_api_keys(user_id, organization_ids)
        reset = PasswordReset(user_id, email, len(families), revoked)
        if failures:
            raise ApiKeysNotRevoked(reset, len(failures), failures[0].message)
        return reset

    async def _revoke_api_keys(
        self, user_id: UUID, organization_ids: list[UUID]
    ) -> tuple[ApiKeysRevoked, list[ServiceUnavailable]]:
        """Revoke the live API keys ``user_id`` created, in each of ``organization_ids`` in
        that organisation's own tenant transaction, through the path that revokes the
        keys of a member removed (reason ``password_reset``, no actor), and announce them
        once committed, so open streams authenticated by them end.

        The user's organisations are enough: a member's removal revokes their keys there,
        so no live key of theirs is anywhere else. An organisation that fails is skipped
        (its error returned) and the others are still done: fewer live keys of a
        compromised account is better than stopping at the first failure."""
        keys = organizations = 0
        failures: list[ServiceUnavailable] = []
        for organization_id in organization_ids:
            try:
                async with self._uow_factory.organization(organization_id) as uow:
                    # As createApiKey locks it: a key being made now is committed first
                    # (and revoked here) or waits for this to commit.
                    await uow.organizations.lock(organization_id)
                    revoked = await revoke_keys_created_by(
                        uow,
                        user_id,
                        role=None,
                        reason=RESET_REVOCATION_REASON,
                        actor_user_id=None,
                        ip=None,
                        now=self._clock.now(),
                    )
                    await uow.commit()
            except ServiceUnavailable as failure:
                failures.append(failure)
                continue
            # Best effort, as for removeMember: without it a stream finds out at its
            # next periodic re-check; requests over HTTP are refused from the commit on.
            await self._revocations.announce(revoked)
            if revoked:
                keys += len(revoked)
                organizations += 1
        return ApiKeysRevoked(keys, organizations), failures

    async def _refuse_password_change(
        self, uow: UnitOfWork, principal: Principal, origin: RequestOrigin
    ) -> NoReturn:
        await uow.audit.record(
            AuditEntry(
                "auth.password_change_failed",
                principal.organization_id,
                principal.user_id,
                target=f"user:{principal.user_id}",
                ip=origin.ip,
            ),
            self._clock.now(),
        )
        await uow.commit()
        raise InvalidCredentials("The current password is incorrect.")
