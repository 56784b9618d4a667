from __future__ import annotations

import uuid
from collections.abc import Sequence
from uuid import UUID

from sqlalchemy import delete, insert
from sqlalchemy.ext.asyncio import AsyncSession

from domain.entities import ChunkDraft, Document
from infrastructure.database.models import ChunkRow

INSERT_BATCH = 500


def chunk_id(document_id: UUID, ordinal: int) -> UUID:
    """Deterministic, so ingesting the same document twice writes the same rows."""
    return uuid.uuid5(document_id, str(ordinal))


class SqlChunkRepository:
    def __init__(self, session: AsyncSession, organization_id: UUID | None) -> None:
        self._session = session
        self._organization_id = organization_id

    async def replace(
        self,
        document: Document,
        drafts: Sequence[ChunkDraft],
        embeddings: Sequence[Sequence[float]],
    ) -> None:
        if len(drafts) != len(embeddings):
            raise ValueError("one embedding per chunk")
        await self.delete_for_document(document.id)
        rows = [
            {
                "id": chunk_id(document.id, draft.ordinal),
                "organization_id": document.organization_id,
                "document_id": document.id,
                "ordinal": draft.ordinal,
                "text": draft.text,
                "page": draft.page,
                "char_start": draft.char_start,
                "char_end": draft.char_end,
                "token_count": draft.token_count,
                "embedding": list(vector),
            }
            for draft, vector in zip(drafts, embeddings, strict=True)
        ]
        for offset in range(0, len(rows), INSERT_BATCH):
            await self._session.execute(insert(ChunkRow), rows[offset : offset + INSERT_BATCH])

    async def delete_for_document(self, document_id: UUID) -> None:
        await self._session.execute(
            delete(ChunkRow).where(
                ChunkRow.organization_id == self._organization_id,
                ChunkRow.document_id == document_id,
            )
        )
