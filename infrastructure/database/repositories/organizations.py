from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.entities import Organization
from infrastructure.database.models import OrganizationRow


def to_organization(row: OrganizationRow) -> Organization:
    return Organization(id=row.id, name=row.name, created_at=row.created_at)


class SqlOrganizationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, organization: Organization) -> None:
        self._session.add(
            OrganizationRow(
                id=organization.id, name=organization.name, created_at=organization.created_at
            )
        )
        await self._session.flush()

    async def get(self, organization_id: UUID) -> Organization | None:
        row = await self._session.get(OrganizationRow, organization_id)
        return to_organization(row) if row else None

    async def get_many(self, organization_ids: Sequence[UUID]) -> list[Organization]:
        if not organization_ids:
            return []
        rows = await self._session.scalars(
            select(OrganizationRow).where(OrganizationRow.id.in_(set(organization_ids)))
        )
        return [to_organization(row) for row in rows]

    async def lock(self, organization_id: UUID) -> None:
        await self._session.execute(
            select(OrganizationRow.id)
            .where(OrganizationRow.id == organization_id)
            .with_for_update()
        )

    async def hold(self, organization_id: UUID) -> None:
        # FOR KEY SHARE: conflicts with lock's FOR UPDATE only, so sessions starting in
        # one organisation, and updates of its row (the corpus version), never wait.
        await self._session.execute(
            select(OrganizationRow.id)
            .where(OrganizationRow.id == organization_id)
            .with_for_update(read=True, key_share=True)
        )
