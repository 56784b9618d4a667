"""The caller's own profile and organisation, and admin management of members."""

from __future__ import annotations

import logging
from datetime import timedelta
from uuid import UUID

from domain.entities import (
    AuditEntry,
    Member,
    Membership,
    Organization,
    OrganizationMembership,
    Principal,
    Role,
    User,
)
from domain.errors import AlreadyMember, Forbidden, LastAdmin, NotFound, ServiceUnavailable
from domain.ports import Clock, SessionRevocations, UnitOfWork, UnitOfWorkFactory
from domain.services.api_keys import require_user, revoke_keys_beyond_member
from domain.services.refresh_token_retention import (
    LONGEST_ACCESS_TOKEN_TTL,
    access_tokens_issued_since,
)
from domain.services.roles import require_role
from domain.validation import normalize_email

log = logging.getLogger("foundry.organizations")


class OrganizationService:
    """Reads of the caller's user and organisation; member management for admins.

    Every call runs in a tenant transaction, so row-level security limits it to
    the principal's organisation whatever the queries say.
    """

    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        revocations: SessionRevocations,
        clock: Clock,
        *,
        access_token_ttl: timedelta = LONGEST_ACCESS_TOKEN_TTL,
    ) -> None:
        self._uow_factory = uow_factory
        self._revocations = revocations
        self._clock = clock
        # Sessions whose last access token was issued longer ago than this cannot act:
        # a membership change leaves them alone (see refresh_token_retention).
        self._access_token_ttl = access_token_ttl

    async def _confirm_admin(self, uow: UnitOfWork, principal: Principal) -> None:
        """The token's role may be minutes old: check the membership as it is now."""
        current = await uow.memberships.get(principal.user_id, principal.organization_id)
        if current is None or current.role is not Role.ADMIN:
            raise Forbidden("This needs the admin role.")

    async def users_by_id(self, principal: Principal, user_ids: list[UUID]) -> list[User | None]:
        async with self._uow_factory.tenant(principal) as uow:
            found = {user.id: user for user in await uow.users.get_many(user_ids)}
        return [found.get(user_id) for user_id in user_ids]

    async def organizations_by_id(
        self, principal: Principal, organization_ids: list[UUID]
    ) -> list[Organization | None]:
        async with self._uow_factory.tenant(principal) as uow:
            found = {org.id: org for org in await uow.organizations.get_many(organization_ids)}
        return [found.get(org_id) for org_id in organization_ids]

    async def my_organizations(self, principal: Principal) -> list[OrganizationMembership]:
        async with self._uow_factory.tenant(principal) as uow:
            return await uow.memberships.list_for_user(principal.user_id)

    async def list_members(self, principal: Principal) -> list[Member]:
        require_role(principal, Role.ADMIN)
        require_user(principal, "list members")
        async with self._uow_factory.tenant(principal) as uow:
            await self._confirm_admin(uow, principal)
            return await uow.memberships.list_members(principal.organization_id)

    async def add_member(
        self, principal: Principal, email: str, role: Role, ip: str | None
    ) -> Member:
        # Authorised before the email is even read: a caller who may not add members
        # must not learn from NOT_FOUND versus FORBIDDEN whether an account exists.
        require_role(principal, Role.ADMIN)
        require_user(principal, "manage members")
        async with self._uow_factory.tenant(principal) as uow:
            await self._confirm_admin(uow, principal)
        email = normalize_email(email)
        async with self._uow_factory.system() as lookup:
            user = await lookup.users.find_by_email(email)
        if user is None:
            raise NotFound("No account uses this email; ask them to sign up first.")
        now = self._clock.now()
        async with self._uow_factory.tenant(principal) as uow:
            await uow.organizations.lock(principal.organization_id)
            await self._confirm_admin(uow, principal)
            if await uow.memberships.get(user.id, principal.organization_id) is not None:
                raise AlreadyMember()
            await uow.memberships.add(Membership(user.id, principal.organization_id, role, now))
            await uow.audit.record(
                AuditEntry(
                    "member.added",
                    principal.organization_id,
                    principal.user_id,
                    target=f"user:{user.id}",
                    ip=ip,
                    details={"role": role.value},
                ),
                now,
            )
            await uow.commit()
        return Member(user=user, role=role, joined_at=now)

    async def change_role(
        self, principal: Principal, user_id: UUID, role: Role, ip: str | None
    ) -> Member:
        require_role(principal, Role.ADMIN)
        require_user(principal, "manage members")
        now = self._clock.now()
        async with self._uow_factory.tenant(principal) as uow:
            await uow.organizations.lock(principal.organization_id)
            await self._confirm_admin(uow, principal)
            membership = await uow.memberships.get(user_id, principal.organization_id)
            user = await uow.users.get(user_id)
            if membership is None or user is None:
                raise NotFound("No such member.")
            if membership.role == role:
                return Member(user=user, role=role, joined_at=membership.created_at)
            if (
                membership.role == Role.ADMIN
                and await uow.memberships.count_admins(principal.organization_id) <= 1
            ):
                raise LastAdmin()
            await uow.memberships.set_role(user_id, principal.organization_id, role)
            keys = await revoke_keys_beyond_member(
                uow, principal, user_id, role=role, reason="creator_role_lowered", ip=ip, now=now
            )
            families = await uow.refresh_tokens.live_families_for_member(
                user_id,
                principal.organization_id,
                now=now,
                active_since=access_tokens_issued_since(now, self._access_token_ttl),
            )
            await uow.audit.record(
                AuditEntry(
                    "member.role_changed",
                    principal.organization_id,
                    principal.user_id,
                    target=f"user:{user_id}",
                    ip=ip,
                    details={"from": membership.role.value, "to": role.value},
                ),
                now,
            )
            # Access tokens carry the role: make the member's current ones refresh.
            # Before the commit, so that a Redis outage changes nothing; and again
            # after it, for a token refreshed in between with the old role.
            await self._revocations.require_refresh(families)
            await uow.commit()
        # The change is committed: the second call is best effort, so a Redis failure
        # now does not report a change that happened as failed.
        try:
            await self._revocations.require_refresh(families)
        except ServiceUnavailable:
            log.warning(
                "member.role_change_refresh_failed user_id=%s organization_id=%s sessions=%d",
                user_id,
                principal.organization_id,
                len(families),
            )
        await self._revocations.announce(keys)
        return Member(user=user, role=role, joined_at=membership.created_at)

    async def remove_member(self, principal: Principal, user_id: UUID, ip: str | None) -> bool:
        require_role(principal, Role.ADMIN)
        require_user(principal, "manage members")
        now = self._clock.now()
        async with self._uow_factory.tenant(principal) as uow:
            await uow.organizations.lock(principal.organization_id)
            await self._confirm_admin(uow, principal)
            membership = await uow.memberships.get(user_id, principal.organization_id)
            if membership is None:
                raise NotFound("No such member.")
            if (
                membership.role == Role.ADMIN
                and await uow.memberships.count_admins(principal.organization_id) <= 1
            ):
                raise LastAdmin()
            await uow.memberships.remove(user_id, principal.organization_id)
            keys = await revoke_keys_beyond_member(
                uow, principal, user_id, role=None, reason="creator_removed", ip=ip, now=now
            )
            families = await uow.refresh_tokens.revoke_for_member(
                user_id,
                principal.organization_id,
                now,
                active_since=access_tokens_issued_since(now, self._access_token_ttl),
            )
            await uow.audit.record(
                AuditEntry(
                    "member.removed",
                    principal.organization_id,
                    principal.user_id,
                    target=f"user:{user_id}",
                    ip=ip,
                    details={"role": membership.role.value},
                ),
                now,
            )
            # Before the commit: were Redis down after it, the removed member's access
            # tokens would keep working until they expire. Revoking sessions of a
            # removal that then fails to commit only makes the member log in again.
            await self._revocations.revoke(families)
            await uow.commit()
        await self._revocations.announce(keys)
        return True
