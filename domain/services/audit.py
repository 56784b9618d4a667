"""Reading the audit log: admins only, their own organisation only."""

from __future__ import annotations

from domain.entities import AuditPage, Principal, Role
from domain.errors import ValidationFailed
from domain.ports import UnitOfWorkFactory
from domain.services.api_keys import confirm_admin
from domain.services.cursors import decode_cursor
from domain.services.roles import require_role

MAX_AUDIT_PAGE = 100
MAX_ACTION_CHARS = 64


class AuditService:
    def __init__(self, uow_factory: UnitOfWorkFactory) -> None:
        self._uow_factory = uow_factory

    async def list(
        self, principal: Principal, first: int, after: str | None, action: str | None
    ) -> AuditPage:
        """Entries newest first, optionally of one action (e.g. ``auth.login_failed``)."""
        require_role(principal, Role.ADMIN)
        if not 0 <= first <= MAX_AUDIT_PAGE:
            raise ValidationFailed(f"first must be between 0 and {MAX_AUDIT_PAGE}.", field="first")
        if action is not None and not 0 < len(action) <= MAX_ACTION_CHARS:
            raise ValidationFailed(
                f"action must have 1 to {MAX_ACTION_CHARS} characters.", field="action"
            )
        cursor = decode_cursor(after) if after else None
        async with self._uow_factory.tenant(principal) as uow:
            await confirm_admin(uow, principal)
            return await uow.audit.page(first, cursor, action)
