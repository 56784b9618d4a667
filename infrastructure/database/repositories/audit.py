from __future__ import annotations

from datetime import datetime
from uuid import UUID, uuid4

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from domain.entities import AuditEntry, AuditPage, AuditRecord
from infrastructure.database.models import AuditLogRow, UserRow


class SqlAuditLog:
    def __init__(self, session: AsyncSession, organization_id: UUID | None = None) -> None:
        self._session = session
        self._organization_id = organization_id

    async def record(self, entry: AuditEntry, at: datetime) -> None:
        self._session.add(
            AuditLogRow(
                id=uuid4(),
                organization_id=entry.organization_id,
                actor_user_id=entry.actor_user_id,
                action=entry.action,
                target=entry.target[:320] if entry.target else None,
                ip=entry.ip[:64] if entry.ip else None,
                details=entry.details,
                created_at=at,
            )
        )
        await self._session.flush()

    async def page(
        self, first: int, after: tuple[datetime, UUID] | None, action: str | None
    ) -> AuditPage:
        if self._organization_id is None:
            raise RuntimeError("audit log read outside a tenant transaction")
        # Row-level security hides the emails of users who are no longer members.
        query = (
            select(AuditLogRow, UserRow.email)
            .outerjoin(UserRow, UserRow.id == AuditLogRow.actor_user_id)
            .where(AuditLogRow.organization_id == self._organization_id)
        )
        if action is not None:
            query = query.where(AuditLogRow.action == action)
        if after is not None:
            query = query.where(
                tuple_(AuditLogRow.created_at, AuditLogRow.id) < tuple_(after[0], after[1])
            )
        rows = list(
            await self._session.execute(
                query.order_by(AuditLogRow.created_at.desc(), AuditLogRow.id.desc()).limit(
                    first + 1
                )
            )
        )
        items = [
            AuditRecord(
                id=row.id,
                action=row.action,
                actor_user_id=row.actor_user_id,
                actor_email=email,
                target=row.target,
                ip=row.ip,
                details=dict(row.details or {}),
                created_at=row.created_at,
            )
            for row, email in rows[:first]
        ]
        return AuditPage(items=items, has_next_page=len(rows) > first)
