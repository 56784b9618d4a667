"""How a document's stored file is named: ``organisation id/document id``."""

from __future__ import annotations

from uuid import UUID


def storage_key(organization_id: UUID, document_id: UUID) -> str:
    return f"{organization_id}/{document_id}"


def parse_storage_key(key: str) -> tuple[UUID, UUID] | None:
    """The organisation and document a key names; None for anything else."""
    parts = key.split("/")
    if len(parts) != 2:  # organisation/document
        return None
    try:
        organization_id, document_id = UUID(parts[0]), UUID(parts[1])
    except ValueError:
        return None
    if storage_key(organization_id, document_id) != key:  # only the canonical spelling
        return None
    return organization_id, document_id
