from __future__ import annotations

from datetime import datetime
from uuid import uuid4

from sqlalchemy.ext.asyncio import AsyncSession

from domain.entities import AuditEntry
from infrastructure.database.models import AuditLogRow


class SqlAuditLog:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

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
