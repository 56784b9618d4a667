from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy import ColumnElement, Uuid, delete, exists, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from domain.entities import RefreshTokenRecord
from infrastructure.database.models import RefreshTokenRow

# A family and the families switched to from it, and from those, and so on: one index
# probe (previous_family_id) per switch, run inside the statement that uses it, so no
# list of families ever travels to the client and back (a long lineage would not fit in
# a statement's parameters).
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
).columns(family_id=Uuid)


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
        # Only the tokens that can still be redeemed (unused, unrevoked: each session's
        # newest), found through their partial index (migration 0012): a used token is
        # refused as a replay whether revoked or not, so revoking the ones a session
        # left behind would cost a write per refresh it ever made, and a long-lived
        # session could outgrow the statement timeout and never be ended.
        live = _live_in_lineage(family_id)
        # Each statement reads what was committed when it began: a refresh or switch in
        # the lineage that commits meanwhile (one this update waited for, then skipped
        # as used) leaves a new token the update did not see, so it runs again until no
        # live token of the lineage is left to see.
        families: set[UUID] = set()
        for _ in range(_MAX_REVOKE_ROUNDS):
            revoked = await self._session.scalars(
                update(RefreshTokenRow)
                .where(*live)
                .values(revoked_at=at)
                .returning(RefreshTokenRow.family_id)
            )
            families.update(revoked)
            if not await self._session.scalar(select(exists().where(*live))):
                break
        return sorted(families)

    async def revoke_for_member(
        self, user_id: UUID, organization_id: UUID, at: datetime, *, active_since: datetime
    ) -> list[UUID]:
        # Only the sessions' newest tokens: an older one is used (a replay of it is reuse
        # whether revoked or not) and an expired one can never be redeemed.
        revoked = await self._session.scalars(
            update(RefreshTokenRow)
            .where(*_live_tips(user_id, organization_id, at, active_since))
            .values(revoked_at=at)
            .returning(RefreshTokenRow.family_id)
        )
        return sorted(set(revoked))

    async def live_families_for_member(
        self,
        user_id: UUID,
        organization_id: UUID,
        *,
        now: datetime | None = None,
        active_since: datetime | None = None,
    ) -> list[UUID]:
        rows = await self._session.scalars(
            select(RefreshTokenRow.family_id)
            .where(*_live_tips(user_id, organization_id, now, active_since))
            .distinct()
        )
        return list(rows)

    async def revoke_for_user(
        self, user_id: UUID, at: datetime, *, active_since: datetime, keep_family: UUID
    ) -> list[UUID]:
        live = [
            *_live_tips(user_id, None, at, active_since),
            RefreshTokenRow.family_id != keep_family,
        ]
        # A refresh that locked a tip before this update reached it commits its new tip
        # unseen by the update, which then skips the old (now used) one: go round again
        # until an update changes nothing and no live tip is left to see.
        families: set[UUID] = set()
        for _ in range(_MAX_REVOKE_ROUNDS):
            revoked = list(
                await self._session.scalars(
                    update(RefreshTokenRow)
                    .where(*live)
                    .values(revoked_at=at)
                    .returning(RefreshTokenRow.family_id)
                )
            )
            families.update(revoked)
            if not revoked and not await self._session.scalar(select(exists().where(*live))):
                break
        return sorted(families)

    async def delete_ended(
        self, started_before: datetime, expired_before: datetime, limit: int
    ) -> int:
        doomed = (
            select(RefreshTokenRow.id)
            .where(
                RefreshTokenRow.session_started_at < started_before,
                RefreshTokenRow.expires_at < expired_before,
            )
            .limit(limit)
            # A row some transaction holds (a log-out revoking an ended lineage) waits
            # for the next round rather than making the two wait for each other.
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        deleted = await self._session.scalars(
            delete(RefreshTokenRow)
            .where(RefreshTokenRow.id.in_(doomed))
            .returning(RefreshTokenRow.id)
        )
        return len(deleted.all())


def _live_in_lineage(family_id: UUID) -> list[ColumnElement[bool]]:
    """The unused, unrevoked tokens of a family and of every family switched to from it."""
    return [
        RefreshTokenRow.family_id.in_(_LINEAGE.bindparams(family=family_id)),
        RefreshTokenRow.used_at.is_(None),
        RefreshTokenRow.revoked_at.is_(None),
    ]


def _live_tips(
    user_id: UUID,
    organization_id: UUID | None,
    now: datetime | None,
    active_since: datetime | None,
) -> list[ColumnElement[bool]]:
    """A member's unused, unrevoked tokens (each session's newest) that still let it act:
    redeemable after ``now``, or issued after ``active_since`` with an access token that
    may still be valid. A used token's session either has a newer token (a refresh) or
    was revoked in Redis when it was traded (a switch). No ``organization_id``: in
    every organisation."""
    conditions: list[ColumnElement[bool]] = [
        RefreshTokenRow.user_id == user_id,
        RefreshTokenRow.used_at.is_(None),
        RefreshTokenRow.revoked_at.is_(None),
    ]
    if organization_id is not None:
        conditions.append(RefreshTokenRow.organization_id == organization_id)
    acting: list[ColumnElement[bool]] = []
    if now is not None:
        acting.append(RefreshTokenRow.expires_at > now)
    if active_since is not None:
        acting.append(RefreshTokenRow.created_at > active_since)
    if acting:
        conditions.append(or_(*acting))
    return conditions
