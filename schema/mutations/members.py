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
        description="Change a member's role; the last admin cannot be demoted.",
    )
    remove_member: bool = strawberry.mutation(
        resolver=organizations.remove_member,
        permission_classes=[IsAdmin],
        description="Remove a member and end their sessions; the last admin cannot be removed.",
    )
