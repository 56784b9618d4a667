from __future__ import annotations

import strawberry

from resolvers import accounts, organizations
from schema.permissions import IsAuthenticated
from schema.types.organization import Organization
from schema.types.user import User


@strawberry.type
class Query:
    me: User = strawberry.field(
        resolver=accounts.me, permission_classes=[IsAuthenticated], description="The caller."
    )
    organization: Organization = strawberry.field(
        resolver=organizations.organization,
        permission_classes=[IsAuthenticated],
        description="The organisation the caller's session is in.",
    )
