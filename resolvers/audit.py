"""The audit log of the caller's organisation, for admins."""

from __future__ import annotations

from schema.context import Info
from schema.types.audit import AuditEntryConnection, AuditEntryEdge
from schema.types.page_info import AUDIT_PAGE, PageInfo, page_size


async def audit_log(
    info: Info,
    first: int | None = AUDIT_PAGE,
    after: str | None = None,
    action: str | None = None,
) -> AuditEntryConnection:
    ctx = info.context
    page = await ctx.services.audit.list(
        ctx.require_principal(), page_size(first, AUDIT_PAGE), after, action
    )
    edges = [AuditEntryEdge.from_domain(record) for record in page.items]
    return AuditEntryConnection(
        edges=edges,
        page_info=PageInfo.forward(edges, has_next_page=page.has_next_page),
    )
