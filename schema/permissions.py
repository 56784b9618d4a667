"""Permission classes for fields; services check roles and tenancy again."""

from __future__ import annotations

from strawberry.permission import BasePermission

from domain.entities import Role
from domain.services.organizations import require_role
from schema.context import Info


class IsAuthenticated(BasePermission):
    message = "Authentication required."

    def has_permission(self, source: object, info: Info, **kwargs: object) -> bool:
        info.context.require_principal()
        return True


class IsAdmin(BasePermission):
    message = "This needs the admin role."

    def has_permission(self, source: object, info: Info, **kwargs: object) -> bool:
        require_role(info.context.require_principal(), Role.ADMIN)
        return True
