from __future__ import annotations

import strawberry

from resolvers import accounts
from schema.permissions import IsUser
from schema.types.auth import AuthPayload


@strawberry.type
class AccountMutations:
    sign_up: AuthPayload = strawberry.mutation(
        resolver=accounts.sign_up,
        description="Create an account and a personal organisation with you as admin.",
    )
    log_in: AuthPayload = strawberry.mutation(
        resolver=accounts.log_in,
        description="Start a session, in `organizationId` or your first organisation.",
    )
    refresh_session: AuthPayload = strawberry.mutation(
        resolver=accounts.refresh_session,
        description="Trade a refresh token (single use) for new tokens.",
    )
    switch_organization: AuthPayload = strawberry.mutation(
        resolver=accounts.switch_organization,
        description=(
            "Trade the session's refresh token (single use) for a session in another of "
            "your organisations; the old session ends."
        ),
    )
    log_out: bool = strawberry.mutation(
        resolver=accounts.log_out,
        description="End the session the refresh token belongs to; false if it was unknown.",
    )
    change_password: bool = strawberry.mutation(
        resolver=accounts.change_password,
        permission_classes=[IsUser],
        description=(
            "Replace your password (`currentPassword` must be right; it spends the log-in "
            "budget of your email) and end every other session of yours, in every "
            "organisation; this session goes on."
        ),
    )
