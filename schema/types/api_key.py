from __future__ import annotations

from datetime import datetime

import strawberry

from domain.entities import ApiKey as DomainApiKey
from domain.services.cursors import encode_cursor
from schema.types.enums import Role
from schema.types.page_info import PageInfo


@strawberry.type(description="A server-to-server credential of your organisation (admins only).")
class ApiKey:
    id: strawberry.ID
    name: str
    prefix: str = strawberry.field(description="The key's first characters, to recognise it.")
    role: Role
    created_by_id: strawberry.ID | None
    created_at: datetime
    last_used_at: datetime | None = strawberry.field(
        description="Updated at most once a minute (FOUNDRY_API_KEY_LAST_USED_INTERVAL_SECONDS)."
    )
    expires_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def from_domain(cls, key: DomainApiKey) -> ApiKey:
        return cls(
            id=strawberry.ID(str(key.id)),
            name=key.name,
            prefix=key.key_prefix,
            role=Role.from_domain(key.role),
            created_by_id=strawberry.ID(str(key.created_by)) if key.created_by else None,
            created_at=key.created_at,
            last_used_at=key.last_used_at,
            expires_at=key.expires_at,
            revoked_at=key.revoked_at,
        )


@strawberry.type(description="A new API key; `key` is shown this once and cannot be read again.")
class CreatedApiKey:
    key: str = strawberry.field(description="Send as `Authorization: Bearer <key>`.")
    api_key: ApiKey


@strawberry.input
class CreateApiKeyInput:
    name: str
    role: Role
    expires_at: datetime | None = None


@strawberry.type
class ApiKeyEdge:
    cursor: str
    node: ApiKey

    @classmethod
    def from_domain(cls, key: DomainApiKey) -> ApiKeyEdge:
        return cls(cursor=encode_cursor(key.created_at, key.id), node=ApiKey.from_domain(key))


@strawberry.type
class ApiKeyConnection:
    edges: list[ApiKeyEdge]
    page_info: PageInfo
    total_count: int
