"""The role check every service makes before it touches anything."""

from __future__ import annotations

from domain.entities import Principal, Role
from domain.errors import Forbidden


def require_role(principal: Principal, required: Role) -> None:
    if not principal.role.allows(required):
        raise Forbidden(f"This needs the {required.value} role.")
