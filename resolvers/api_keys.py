"""API keys: admins create (shown once), list and revoke them."""

from __future__ import annotations

import strawberry

from resolvers.ids import parse_id
from schema.context import Info
from schema.types.api_key import (
    ApiKey,
    ApiKeyConnection,
    ApiKeyEdge,
    CreateApiKeyInput,
    CreatedApiKey,
)
from schema.types.page_info import API_KEYS_PAGE, PageInfo, page_size


async def create_api_key(info: Info, input: CreateApiKeyInput) -> CreatedApiKey:
    ctx = info.context
    created = await ctx.services.api_keys.create(
        ctx.require_principal(),
        input.name,
        input.role.to_domain(),
        input.expires_at,
        ctx.client_ip,
    )
    return CreatedApiKey(key=created.key, api_key=ApiKey.from_domain(created.api_key))


async def revoke_api_key(info: Info, id: strawberry.ID) -> ApiKey:
    ctx = info.context
    key = await ctx.services.api_keys.revoke(
        ctx.require_principal(), parse_id(id, "API key"), ctx.client_ip
    )
    return ApiKey.from_domain(key)


async def api_keys(
    info: Info, first: int | None = API_KEYS_PAGE, after: str | None = None
) -> ApiKeyConnection:
    ctx = info.context
    page = await ctx.services.api_keys.list(
        ctx.require_principal(), page_size(first, API_KEYS_PAGE), after
    )
    edges = [ApiKeyEdge.from_domain(key) for key in page.items]
    return ApiKeyConnection(
        edges=edges,
        page_info=PageInfo.forward(edges, has_next_page=page.has_next_page),
        total_count=page.total_count,
    )
