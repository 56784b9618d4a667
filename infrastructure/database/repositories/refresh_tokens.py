from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from domain.entities import RefreshTokenRecord
from infrastructure.database.models import RefreshTokenRow

# A family and the families switched to from it, and from those, and so on.
_LINEAGE = text(
    """
    WITH RECURSIVE lineage(family_id) AS (
        SELECT CAST(:family AS uuid)
        UNION
        SELECT t.family_id
        FROM refresh_tokens t JOIN lineage l ON t.previous_family_id = l.family_id
    )
    SELECT family_id FROM lineage
    """
)


# A lineage only grows while a refresh or switch in it commits between two rounds.
_MAX_REVOKE_ROUNDS = 10


def to_record(row: RefreshTokenRow) -> RefreshTokenRecord:
    return RefreshTokenRecord(
        id=row.id,
        user_id=row.user_id,
        organization_id=row.organization_id,
        family_id=row.family_id,
        session_started_at=row.session_started_at,
        expires_at=row.expires_at,
        used_at=row.used_at,
        revoked_at=row.revoked_at,
        previous_family_id=row.previous_family_id,
    )


class SqlRefreshTokenRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, record: RefreshTokenRecord, token_hash: str, created_at: datetime) -> None:
        self._session.add(
            RefreshTokenRow(
                id=record.id,
                organization_id=record.organization_id,
                user_id=record.user_id,
                family_id=record.family_id,
                previous_family_id=record.previous_family_id,
                session_started_at=record.session_started_at,
                token_hash=token_hash,
                created_at=created_at,
                expires_at=record.expires_at,
            )
        )
        await self._session.flush()

    async def organization_of(self, token_hash: str) -> UUID | None:
        return await self._session.scalar(
            select(RefreshTokenRow.organization_id).where(RefreshTokenRow.token_hash == token_hash)
        )

    async def find_for_update(self, token_hash: str) -> RefreshTokenRecord | None:
        row = await self._session.scalar(
            select(RefreshTokenRow)
            .where(RefreshTokenRow.token_hash == token_hash)
            .with_for_update(),
            # The row as locked, never a copy an earlier read left in the session.
            execution_options={"populate_existing": True},
        )
        return to_record(row) if row else None

    async def mark_used(self, token_id: UUID, at: datetime) -> None:
        await self._session.execute(
            update(RefreshTokenRow).where(RefreshTokenRow.id == token_id).values(used_at=at)
        )

    async def revoke_family(self, family_id: UUID, at: datetime) -> list[UUID]:
        # Each statement reads what was committed when it began: a refresh or switch in
        # the lineage that commits meanwhile adds rows the update did not see, so it runs
        # again until it changes nothing.
        families: set[UUID] = set()
        for _ in range(_MAX_REVOKE_ROUNDS):
            lineage = list(await self._session.scalars(_LINEAGE, {"family": family_id}))
            families.update(lineage)
            revoked = await self._session.scalars(
                update(RefreshTokenRow)
                .where(RefreshTokenRow.family_id.in_(lineage), RefreshTokenRow.revoked_at.is_(None))
                .values(revoked_at=at)
                .returning(RefreshTokenRow.id)
            )
            if not revoked.all():
                break
        return sorted(families)

    async def revoke_for_member(
        self, user_id: UUID, organization_id: UUID, at: datetime
    ) -> list[UUID]:
        families = await self.live_families_for_member(user_id, organization_id)
        await self._session.execute(
            update(RefreshTokenRow)
            .where(
                RefreshTokenRow.user_id == user_id,
                RefreshTokenRow.organization_id == organization_id,
                RefreshTokenRow.revoked_at.is_(None),
            )
            .values(revoked_at=at)
        )
        return families

    async def live_families_for_member(self, user_id: UUID, organization_id: UUID) -> list[UUID]:
        rows = await self._session.scalars(
            select(RefreshTokenRow.family_id)
            .where(
                RefreshTokenRow.user_id == user_id,
                RefreshTokenRow.organization_id == organization_id,
                RefreshTokenRow.revoked_at.is_(None),
            )
            .distinct()
        )
        return list(rows)
