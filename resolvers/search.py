"""Hybrid search over the caller's organisation's documents."""

from __future__ import annotations

import strawberry

from domain.ports import Budget
from resolvers.ids import parse_ids
from schema.context import Info
from schema.types.page_info import SEARCH_LIMIT, page_size
from schema.types.search import SearchHit


async def search(
    info: Info,
    query: str,
    limit: int | None = SEARCH_LIMIT,
    document_ids: list[strawberry.ID] | None = None,
) -> list[SearchHit]:
    ctx = info.context
    # Charged per search field, so each aliased search in one request counts.
    principal = await ctx.charge_user(Budget.SEARCH_USER)
    hits = await ctx.services.search.search(
        principal,
        query,
        page_size(limit, SEARCH_LIMIT),
        parse_ids(document_ids) if document_ids is not None else None,
    )
    return [SearchHit.from_domain(hit) for hit in hits]
