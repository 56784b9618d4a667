"""Permission classes for fields; services check roles and tenancy again."""

from __future__ import annotations

from strawberry.permission import BasePermission

from domain.entities import Role
from domain.errors import Forbidden
from domain.services.roles import require_role
from schema.context import Info


class IsAuthenticated(BasePermission):
    message = "Authentication required."

    def has_permission(self, source: object, info: Info, **kwargs: object) -> bool:
        info.context.require_principal()
        return True


class IsUser(BasePermission):
    """Authenticated as a person: API keys have no profile and own no chats."""

    message = "This needs a user session."

    def has_permission(self, source: object, info: Info, **kwargs: object) -> bool:
        if info.context.require_principal().api_key_id is not None:
            raise Forbidden("API keys have no user: this needs a user session (log in).")
        return True


class IsAdmin(BasePermission):
    message = "This needs the admin role."

    def has_permission(self, source: object, info: Info, **kwargs: object) -> bool:
        require_role(info.context.require_principal(), Role.ADMIN)
        return True
