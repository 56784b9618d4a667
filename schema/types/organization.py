from __future__ import annotations

from datetime import datetime

import strawberry

from domain.entities import Member as DomainMember
from domain.entities import Organization as DomainOrganization
from domain.entities import Principal
from domain.entities import Role as DomainRole
from schema.context import Info
from schema.types.enums import Role
from schema.types.user import User


@strawberry.type(description="A member of the caller's organisation (admins only).")
class Member:
    user: User
    role: Role
    joined_at: datetime

    @classmethod
    def from_domain(cls, member: DomainMember, session: Principal | None = None) -> Member:
        return cls(
            user=User.from_domain(member.user, session),
            role=Role.from_domain(member.role),
            joined_at=member.joined_at,
        )


@strawberry.type(description="An organisation; `role` is the caller's role in it.")
class Organization:
    id: strawberry.ID
    name: str
    role: Role
    created_at: datetime
    # Whose session the nested fields answer for (see User.session).
    session: strawberry.Private[Principal | None] = None

    @classmethod
    def from_domain(
        cls,
        organization: DomainOrganization,
        role: DomainRole,
        session: Principal | None = None,
    ) -> Organization:
        return cls(
            id=strawberry.ID(str(organization.id)),
            name=organization.name,
            role=Role.from_domain(role),
            created_at=organization.created_at,
            session=session,
        )

    # Admins only, checked by the resolver against the session the field answers for
    # (a permission class would check the request's). Nullable, so that a refusal stops
    # here: non-null, it nulled the organisation and everything up to the operation,
    # an AuthPayload's new tokens included (a viewer's refreshSession selecting members
    # lost the only copy of its rotated token).
    @strawberry.field(
        description=(
            "Members and their roles: for admins, in the organisation their session is in; "
            "otherwise null, with a FORBIDDEN error."
        )
    )
    async def members(self, info: Info) -> list[Member] | None:
        from resolvers.organizations import list_members

        return await list_members(info, self.id, self.session)
