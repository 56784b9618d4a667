from __future__ import annotations

import strawberry

from resolvers import organizations
from schema.permissions import IsAdmin
from schema.types.organization import Member


@strawberry.type
class MemberMutations:
    add_member: Member = strawberry.mutation(
        resolver=organizations.add_member,
        permission_classes=[IsAdmin],
        description="Add an existing account to your organisation.",
    )
    change_member_role: Member = strawberry.mutation(
        resolver=organizations.change_member_role,
        permission_classes=[IsAdmin],
        description=(
            "Change a member's role; the last admin cannot be demoted. API keys the member"
            " created with a role above the new one are revoked."
        ),
    )
    remove_member: bool = strawberry.mutation(
        resolver=organizations.remove_member,
        permission_classes=[IsAdmin],
        description=(
            "Remove a member, end their sessions and revoke the API keys they created here;"
            " the last admin cannot be removed."
        ),
    )
