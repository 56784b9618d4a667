from __future__ import annotations

from datetime import datetime

import strawberry

from domain.entities import Member as DomainMember
from domain.entities import Organization as DomainOrganization
from domain.entities import Role as DomainRole
from schema.context import Info
from schema.permissions import IsAdmin
from schema.types.enums import Role
from schema.types.user import User


@strawberry.type(description="A member of the caller's organisation (admins only).")
class Member:
    user: User
    role: Role
    joined_at: datetime

    @classmethod
    def from_domain(cls, member: DomainMember) -> Member:
        return cls(
            user=User.from_domain(member.user),
            role=Role.from_domain(member.role),
            joined_at=member.joined_at,
        )


@strawberry.type(description="An organisation; `role` is the caller's role in it.")
class Organization:
    id: strawberry.ID
    name: str
    role: Role
    created_at: datetime

    @classmethod
    def from_domain(cls, organization: DomainOrganization, role: DomainRole) -> Organization:
        return cls(
            id=strawberry.ID(str(organization.id)),
            name=organization.name,
            role=Role.from_domain(role),
            created_at=organization.created_at,
        )

    @strawberry.field(permission_classes=[IsAdmin], description="Members and their roles.")
    async def members(self, info: Info) -> list[Member]:
        from resolvers.organizations import list_members

        return await list_members(info, self.id)
