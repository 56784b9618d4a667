"""Paging shared by every connection and list: PageInfo (Relay's cursor connections,
paged forward) and the page sizes clients may leave out.

Every ``first`` and ``limit`` argument is a nullable Int with a default, as the contract
declares (``documents(first: Int = 20)``): code generators send an unset ``$first: Int``
variable as null, which then means the default, exactly as leaving the argument out.
The services still refuse values out of range (VALIDATION_FAILED).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import strawberry

DOCUMENTS_PAGE = 20
CHATS_PAGE = 20
MESSAGES_PAGE = 50
API_KEYS_PAGE = 20
AUDIT_PAGE = 50
SEARCH_LIMIT = 8


def page_size(requested: int | None, default: int) -> int:
    """``requested``, or ``default`` when the client sent null."""
    return default if requested is None else requested


class _Edge(Protocol):
    @property
    def cursor(self) -> str: ...


@strawberry.type(
    description="Where a page sits in its connection (Relay). Paging is forward-only: "
    "`first` and `after`."
)
class PageInfo:
    has_next_page: bool = strawberry.field(
        description="True when more edges follow this page (pass endCursor as `after`)."
    )
    has_previous_page: bool = strawberry.field(
        description="Always false: paging is forward-only, and Relay's connection spec lets "
        "such connections return false. It does not tell whether edges precede `after`."
    )
    start_cursor: str | None = strawberry.field(
        description="The first edge's cursor; null when the page has no edges."
    )
    end_cursor: str | None = strawberry.field(
        description="The last edge's cursor; null when the page has no edges."
    )

    @classmethod
    def forward(cls, edges: Sequence[_Edge], *, has_next_page: bool) -> PageInfo:
        """The PageInfo of a page of ``edges`` fetched with ``first``/``after``."""
        return cls(
            has_next_page=has_next_page,
            # Knowing whether rows precede `after` would cost every listing another query.
            has_previous_page=False,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        )
