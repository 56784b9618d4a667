"""The audit log of the caller's organisation, for admins."""

from __future__ import annotations

from schema.context import Info
from schema.types.audit import AuditEntryConnection, AuditEntryEdge
from schema.types.document import PageInfo


async def audit_log(
    info: Info, first: int = 50, after: str | None = None, action: str | None = None
) -> AuditEntryConnection:
    ctx = info.context
    page = await ctx.services.audit.list(ctx.require_principal(), first, after, action)
    edges = [AuditEntryEdge.from_domain(record) for record in page.items]
    return AuditEntryConnection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=page.has_next_page, end_cursor=edges[-1].cursor if edges else None
        ),
    )
