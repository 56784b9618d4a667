"""API keys: every tenant query starts from an organisation-filtered statement."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from uuid import UUID

from sqlalchemy import Select, func, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from domain.entities import ApiKey, ApiKeyPage, Role
from infrastructure.database.models import ApiKeyRow


def to_api_key(row: ApiKeyRow) -> ApiKey:
    return ApiKey(
        id=row.id,
        organization_id=row.organization_id,
        created_by=row.created_by,
        name=row.name,
        key_prefix=row.key_prefix,
        role=Role(row.role),
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )


class SqlApiKeyRepository:
    def __init__(self, session: AsyncSession, organization_id: UUID | None) -> None:
        self._session = session
        self._organization_id = organization_id

    def _base(self) -> Select[ApiKeyRow]:
        if self._organization_id is None:
            raise RuntimeError("API key repository used outside a tenant transaction")
        return select(ApiKeyRow).where(ApiKeyRow.organization_id == self._organization_id)

    async def add(self, key: ApiKey, key_hash: str) -> None:
        self._session.add(
            ApiKeyRow(
                id=key.id,
                organization_id=key.organization_id,
                created_by=key.created_by,
                name=key.name,
                key_prefix=key.key_prefix,
                key_hash=key_hash,
                role=key.role.value,
                created_at=key.created_at,
                last_used_at=None,
                expires_at=key.expires_at,
                revoked_at=None,
            )
        )
        await self._session.flush()

    async def get(self, key_id: UUID) -> ApiKey | None:
        row = await self._session.scalar(self._base().where(ApiKeyRow.id == key_id))
        return to_api_key(row) if row else None

    async def find_by_hash(self, key_hash: str) -> ApiKey | None:
        # Authentication does not know the organisation yet: the unique hash is the lookup.
        row = await self._session.scalar(select(ApiKeyRow).where(ApiKeyRow.key_hash == key_hash))
        return to_api_key(row) if row else None

    async def count_active(self, now: datetime) -> int:
        query = self._base().where(
            ApiKeyRow.revoked_at.is_(None),
            or_(ApiKeyRow.expires_at.is_(None), ApiKeyRow.expires_at > now),
        )
        total = await self._session.scalar(select(func.count()).select_from(query.subquery()))
        return int(total or 0)

    async def page(self, first: int, after: tuple[datetime, UUID] | None) -> ApiKeyPage:
        query = self._base()
        total = await self._session.scalar(select(func.count()).select_from(query.subquery()))
        if after is not None:
            query = query.where(
                tuple_(ApiKeyRow.created_at, ApiKeyRow.id) < tuple_(after[0], after[1])
            )
        rows = list(
            await self._session.scalars(
                query.order_by(ApiKeyRow.created_at.desc(), ApiKeyRow.id.desc()).limit(first + 1)
            )
        )
        return ApiKeyPage(
            items=[to_api_key(row) for row in rows[:first]],
            has_next_page=len(rows) > first,
            total_count=int(total or 0),
        )

    async def revoke(self, key_id: UUID, at: datetime) -> ApiKey | None:
        if self._organization_id is None:
            raise RuntimeError("API key repository used outside a tenant transaction")
        row = await self._session.scalar(
            update(ApiKeyRow)
            .where(
                ApiKeyRow.organization_id == self._organization_id,
                ApiKeyRow.id == key_id,
            )
            .values(revoked_at=func.coalesce(ApiKeyRow.revoked_at, at))
            .returning(ApiKeyRow),
            execution_options={"populate_existing": True},
        )
        return to_api_key(row) if row else None

    async def touch(self, key_id: UUID, at: datetime, not_since: datetime) -> None:
        await self._session.execute(
            update(ApiKeyRow)
            .where(
                ApiKeyRow.id == key_id,
                or_(ApiKeyRow.last_used_at.is_(None), ApiKeyRow.last_used_at < not_since),
            )
            .values(last_used_at=at)
        )

    async def revoke_created_by(
        self, user_id: UUID, roles: Collection[Role], at: datetime
    ) -> list[ApiKey]:
        if self._organization_id is None:
            raise RuntimeError("API key repository used outside a tenant transaction")
        if not roles:
            return []
        rows = await self._session.scalars(
            update(ApiKeyRow)
            .where(
                ApiKeyRow.organization_id == self._organization_id,
                ApiKeyRow.created_by == user_id,
                ApiKeyRow.role.in_([role.value for role in roles]),
                ApiKeyRow.revoked_at.is_(None),
            )
            .values(revoked_at=at)
            .returning(ApiKeyRow),
            execution_options={"populate_existing": True},
        )
        return sorted((to_api_key(row) for row in rows), key=lambda key: key.created_at)
