from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from uuid import UUID

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from domain.entities import User, UserCredentials
from domain.errors import EmailTaken
from infrastructure.database.models import UserRow


def to_user(row: UserRow) -> User:
    return User(id=row.id, email=row.email, created_at=row.created_at)


class SqlUserRepository:
    """Users are global (one account, many organisations); RLS shows a tenant only its members."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, user: User, password_hash: str) -> None:
        row = UserRow(
            id=user.id,
            email=user.email,
            password_hash=password_hash,
            created_at=user.created_at,
            updated_at=user.created_at,
        )
        try:
            # The savepoint must exist before the INSERT: begin_nested() flushes
            # pending objects first, and a failure there would end the transaction.
            async with self._session.begin_nested():
                self._session.add(row)
                await self._session.flush()
        except IntegrityError as exc:
            # Two sign-ups with one email at once: the unique index decides.
            raise EmailTaken() from exc

    async def get(self, user_id: UUID) -> User | None:
        row = await self._session.get(UserRow, user_id)
        return to_user(row) if row else None

    async def get_many(self, user_ids: Sequence[UUID]) -> list[User]:
        if not user_ids:
            return []
        rows = await self._session.scalars(select(UserRow).where(UserRow.id.in_(set(user_ids))))
        return [to_user(row) for row in rows]

    async def find_credentials(self, email: str, *, lock: bool = False) -> UserCredentials | None:
        query = select(UserRow).where(UserRow.email == email)
        # FOR UPDATE, not FOR SHARE: two log-ins that both rehash would deadlock upgrading
        # a shared lock; a user's log-ins are rarely concurrent, so they take turns.
        row = await self._session.scalar(query.with_for_update() if lock else query)
        return UserCredentials(to_user(row), row.password_hash) if row else None

    async def find_by_email(self, email: str) -> User | None:
        row = await self._session.scalar(select(UserRow).where(UserRow.email == email))
        return to_user(row) if row else None

    async def set_password_hash(self, user_id: UUID, password_hash: str) -> None:
        await self._session.execute(
            update(UserRow)
            .where(UserRow.id == user_id)
            .values(password_hash=password_hash, updated_at=datetime.now(UTC))
        )

    async def find_credentials_by_id(self, user_id: UUID) -> UserCredentials | None:
        row = await self._session.scalar(select(UserRow).where(UserRow.id == user_id))
        return UserCredentials(to_user(row), row.password_hash) if row else None

    async def replace_password_hash(self, user_id: UUID, expected_hash: str, new_hash: str) -> bool:
        # One statement: a concurrent change (a log-in's rehash, another password change)
        # either committed first, and the WHERE no longer matches, or waits for this one.
        replaced = await self._session.scalar(
            update(UserRow)
            .where(UserRow.id == user_id, UserRow.password_hash == expected_hash)
            .values(password_hash=new_hash, updated_at=datetime.now(UTC))
            .returning(UserRow.id)
        )
        return replaced is not None
