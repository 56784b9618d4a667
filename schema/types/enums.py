from __future__ import annotations

from enum import Enum

import strawberry

from domain.entities import Role as DomainRole


@strawberry.enum(description="A member's role in an organisation.")
class Role(Enum):
    VIEWER = "viewer"
    EDITOR = "editor"
    ADMIN = "admin"

    @classmethod
    def from_domain(cls, role: DomainRole) -> Role:
        return cls(role.value)

    def to_domain(self) -> DomainRole:
        return DomainRole(self.value)
