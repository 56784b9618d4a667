from __future__ import annotations

from uuid import UUID

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from domain.entities import Member, Membership, OrganizationMembership, Role
from infrastructure.database.models import MembershipRow, OrganizationRow, UserRow
from infrastructure.database.repositories.organizations import to_organization
from infrastructure.database.repositories.users import to_user


class SqlMembershipRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, membership: Membership) -> None:
        self._session.add(
            MembershipRow(
                user_id=membership.user_id,
                organization_id=membership.organization_id,
                role=membership.role.value,
                created_at=membership.created_at,
            )
        )
        await self._session.flush()

    async def get(self, user_id: UUID, organization_id: UUID) -> Membership | None:
        row = await self._session.scalar(
            select(MembershipRow).where(
                MembershipRow.organization_id == organization_id, MembershipRow.user_id == user_id
            )
        )
        if row is None:
            return None
        return Membership(row.user_id, row.organization_id, Role(row.role), row.created_at)

    async def list_for_user(self, user_id: UUID) -> list[OrganizationMembership]:
        rows = await self._session.execute(
            select(OrganizationRow, MembershipRow.role)
            .join(MembershipRow, MembershipRow.organization_id == OrganizationRow.id)
            .where(MembershipRow.user_id == user_id)
            .order_by(MembershipRow.created_at, OrganizationRow.id)
        )
        return [OrganizationMembership(to_organization(org), Role(role)) for org, role in rows]

    async def list_members(self, organization_id: UUID) -> list[Member]:
        rows = await self._session.execute(
            select(UserRow, MembershipRow.role, MembershipRow.created_at)
            .join(MembershipRow, MembershipRow.user_id == UserRow.id)
            .where(MembershipRow.organization_id == organization_id)
            .order_by(MembershipRow.created_at, UserRow.id)
        )
        return [Member(to_user(user), Role(role), joined) for user, role, joined in rows]

    async def count_admins(self, organization_id: UUID) -> int:
        count = await self._session.scalar(
            select(func.count())
            .select_from(MembershipRow)
            .where(
                MembershipRow.organization_id == organization_id,
                MembershipRow.role == Role.ADMIN.value,
            )
        )
        return int(count or 0)

    async def set_role(self, user_id: UUID, organization_id: UUID, role: Role) -> None:
        await self._session.execute(
            update(MembershipRow)
            .where(
                MembershipRow.organization_id == organization_id, MembershipRow.user_id == user_id
            )
            .values(role=role.value)
        )

    async def remove(self, user_id: UUID, organization_id: UUID) -> None:
        await self._session.execute(
            delete(MembershipRow).where(
                MembershipRow.organization_id == organization_id, MembershipRow.user_id == user_id
            )
        )
