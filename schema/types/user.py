from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry

from domain.entities import Principal
from domain.entities import User as DomainUser
from schema.context import Info

if TYPE_CHECKING:
    from schema.types.organization import Organization


@strawberry.type(description="A person with an account.")
class User:
    id: strawberry.ID
    email: str
    created_at: datetime
    # Whose session the nested fields answer for: a session a mutation just started
    # (AuthPayload), else None for the request's own.
    session: strawberry.Private[Principal | None] = None

    @classmethod
    def from_domain(cls, user: DomainUser, session: Principal | None = None) -> User:
        return cls(
            id=strawberry.ID(str(user.id)),
            email=user.email,
            created_at=user.created_at,
            session=session,
        )

    @strawberry.field(
        description=(
            "Organisations this user belongs to that you can see, each with your role in it "
            "(Organization.role): all of yours for yourself; for another member (an admin's "
            "`members`), only the organisation your session is in, which you share."
        )
    )
    async def organizations(
        self, info: Info
    ) -> list[Annotated[Organization, strawberry.lazy("schema.types.organization")]]:
        from resolvers.organizations import organizations_of

        return await organizations_of(info, self.id, self.session)
