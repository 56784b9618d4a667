"""An answer's chat writes, on the hot path's asyncpg pool (``reader.py``).

Every answer writes twice: the question (with the chat locked, its recent history and
the corpus version read), then the answer (with the chat locked again, so that it is
timed under the lock as the question is). Through a SQLAlchemy session those two
transactions took about a quarter of the event loop's time at 8 concurrent answers
(bench/README.md, run 47). Here each statement is plain SQL sent
straight through the driver, and the message and its chat's ``updated_at`` (and
title) are one statement: the question's transaction is five round trips, the
answer's four.

Isolation is the unit of work's: the same role, the same tenant settings, under
row-level security; the user filters below say the same thing in the query.
"""

from __future__ import annotations

import json
from types import TracebackType
from typing import Self
from uuid import UUID

import asyncpg

from domain.answers.ports import Turn
from domain.chats.entities import Chat, Message, MessageRole
from domain.entities import Principal
from infrastructure.database.reader import ReaderPool
from infrastructure.database.repositories.chats import source_to_json

# $1 organisation, $2 user, $3 chat. Locked until the transaction ends: a deleteChat
# or renameChat waits for the commit. The corpus version (migration 0004) is read in
# the same round trip.
_LOCK_CHAT = """
SELECT c.id, c.organization_id, c.user_id, c.title, c.created_at, c.updated_at,
       (SELECT o.corpus_version FROM organizations o WHERE o.id = c.organization_id)
FROM chats c
WHERE c.organization_id = $1 AND c.user_id = $2 AND c.id = $3
FOR UPDATE OF c"""

# $1 organisation, $2 user, $3 chat, $4 how many: the last messages, oldest first.
_HISTORY = """
SELECT recent.role, recent.content
FROM (
  SELECT m.role, m.content, m.created_at, m.id
  FROM messages m
  WHERE m.organization_id = $1 AND m.chat_id = $3
    AND m.chat_id IN (SELECT c.id FROM chats c WHERE c.organization_id = $1 AND c.user_id = $2)
  ORDER BY m.created_at DESC, m.id DESC
  LIMIT $4
) AS recent
ORDER BY recent.created_at, recent.id"""

# $1 organisation, $2 user, $3 chat, $4 the message's time as the caller read it, $5
# the new title or NULL, then the message's own columns. Messages are paged in the
# order of their times, and a caller's clock may be behind the one that timed the last
# message (another replica's, or stepped back), so the message is timed at least a
# microsecond after the chat's last message and its updated_at; that time is also the
# chat's new updated_at, which so never goes back. Both are read with the chat locked
# (by the caller's lock_chat, or by this UPDATE, which then sees the updated_at of a
# turn that committed while it waited): no other turn of the chat writes in between.
# The last message is read too because a rename may have moved updated_at back. The
# message is stored only if the chat was touched, that is if it is still the user's.
_APPEND = """
WITH touched AS (
  UPDATE chats c
  SET updated_at = GREATEST(
        $4::timestamptz,
        c.updated_at + interval '1 microsecond',
        (SELECT max(m.created_at) FROM messages m
         WHERE m.organization_id = $1 AND m.chat_id = c.id) + interval '1 microsecond'
      ),
      title = COALESCE($5::text, c.title)
  WHERE c.organization_id = $1 AND c.user_id = $2 AND c.id = $3
  RETURNING c.id, c.organization_id, c.user_id, c.title, c.created_at, c.updated_at
), added AS (
  INSERT INTO messages (id, organization_id, chat_id, role, content, sources, model,
                        prompt_tokens, completion_tokens, latency_ms, degraded, created_at)
  SELECT $6, t.organization_id, t.id, $7, $8, $9::jsonb, $10, $11, $12, $13, $14,
         t.updated_at
  FROM touched t
)
SELECT id, organization_id, user_id, title, created_at, updated_at FROM touched"""


def _chat(row: asyncpg.Record) -> Chat:
    chat_id, organization_id, user_id, title, created_at, updated_at = row[:6]
    return Chat(chat_id, organization_id, user_id, title, created_at, updated_at)


class SqlChatTurn:
    """One read-write transaction of the principal's, writing one turn of a chat."""

    def __init__(self, pool: ReaderPool, principal: Principal) -> None:
        # An API key's principal carries the key's id as its user_id, which owns no chat.
        self._pool = pool
        self._principal = principal
        self._connection: asyncpg.Connection | None = None

    async def __aenter__(self) -> Self:
        self._connection = await self._pool.begin(self._principal, read_only=False)
        return self

    def connection(self) -> asyncpg.Connection:
        """The transaction's connection, while inside the block."""
        if self._connection is None:
            raise RuntimeError("the chat turn is used outside its block")
        return self._connection

    async def lock_chat(self, chat_id: UUID) -> tuple[Chat, str] | None:
        row = await self.connection().fetchrow(
            _LOCK_CHAT, self._principal.organization_id, self._principal.user_id, chat_id
        )
        if row is None:
            return None
        version = row[6]
        return _chat(row), str(version if version is not None else "-")

    async def history(self, chat_id: UUID, limit: int) -> list[Turn]:
        if limit <= 0:
            return []
        rows = await self.connection().fetch(
            _HISTORY, self._principal.organization_id, self._principal.user_id, chat_id, limit
        )
        return [Turn(MessageRole(role), content) for role, content in rows]

    async def append(self, message: Message, title: str | None = None) -> Chat | None:
        if message.organization_id != self._principal.organization_id:
            raise ValueError("the message belongs to another organisation")
        usage = message.usage
        row = await self.connection().fetchrow(
            _APPEND,
            self._principal.organization_id,
            self._principal.user_id,
            message.chat_id,
            message.created_at,
            title,
            message.id,
            message.role.value,
            message.content,
            json.dumps([source_to_json(source) for source in message.sources]),
            usage.model if usage else None,
            usage.prompt_tokens if usage else None,
            usage.completion_tokens if usage else None,
            usage.latency_ms if usage else None,
            usage.degraded if usage else False,
        )
        return _chat(row) if row is not None else None

    async def commit(self) -> None:
        connection = self.connection()
        # PostgreSQL answers COMMIT with ROLLBACK, not an error, in a failed transaction.
        if await connection.execute("COMMIT") != "COMMIT":
            raise RuntimeError("the chat turn's transaction had failed and was rolled back")
        self._connection = None
        await self._pool.release(connection)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        connection, self._connection = self._connection, None  # None once committed
        await self._pool.end(connection, exc)  # without a commit nothing is kept
