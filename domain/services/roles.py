"""The role check every service makes before it touches anything, and the one a write
makes again against the membership as it is now."""

from __future__ import annotations

from domain.entities import Principal, Role
from domain.errors import Forbidden
from domain.ports import UnitOfWork


def require_role(principal: Principal, required: Role) -> None:
    if not principal.role.allows(required):
        raise Forbidden(f"This needs the {required.value} role.")


async def confirm_role(uow: UnitOfWork, principal: Principal, required: Role) -> None:
    """A user's token role may be minutes old: check the membership as it is now.

    A removal or a lowered role reaches the user's access tokens through Redis (the
    session revocations); should Redis lose that (a restart without persistence, a
    failover), the database still says no. A key's role was read from its row for this
    very request, so it is current.
    """
    if principal.api_key_id is not None:
        return
    current = await uow.memberships.get(principal.user_id, principal.organization_id)
    if current is None or not current.role.allows(required):
        raise Forbidden(f"This needs the {required.value} role.")
