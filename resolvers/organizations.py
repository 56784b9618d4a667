"""The caller's organisation and, for admins, its members."""

from __future__ import annotations

import strawberry

from domain.entities import Principal
from domain.entities import Role as DomainRole
from domain.errors import Forbidden, NotFound
from domain.ports import Budget
from domain.services.roles import require_role
from resolvers.ids import parse_id
from schema.context import Info
from schema.types.enums import Role
from schema.types.organization import Member, Organization


async def organization(info: Info) -> Organization:
    principal = info.context.require_principal()
    found = await info.context.loaders.organization.load(principal.organization_id)
    if found is None:
        raise NotFound("Your organisation no longer exists.")
    return Organization.from_domain(found, principal.role)


async def organizations_of(
    info: Info, user_id: str, session: Principal | None = None
) -> list[Organization]:
    """All of a user's organisations to that user; to anyone else (an admin reading
    `members`), only the session's organisation, the one they share: another user's other
    organisations belong to other tenants. ``session`` is the session the field answers
    for when it is not the request's (AuthPayload). Never an error: this field is
    non-null, and one would null everything above it, an AuthPayload's tokens too."""
    principal = session or info.context.require_principal()
    memberships = await info.context.services.organizations.my_organizations(principal)
    if user_id != str(principal.user_id):
        memberships = [m for m in memberships if m.organization.id == principal.organization_id]
    return [Organization.from_domain(m.organization, m.role, session) for m in memberships]


async def list_members(
    info: Info, organization_id: str, session: Principal | None = None
) -> list[Member]:
    """Members of the session's organisation, for its admins; another organisation
    needs a session there. ``session`` as in organizations_of."""
    principal = session or info.context.require_principal()
    require_role(principal, DomainRole.ADMIN)
    if organization_id != str(principal.organization_id):
        raise Forbidden("Log in to that organisation to see its members.")
    members = await info.context.services.organizations.list_members(principal)
    return [Member.from_domain(member, session) for member in members]


# Member changes share one budget per admin. Every try counts, refused or not: addMember
# looks the email up, so an unlimited one would tell which addresses have accounts as
# fast as a client can ask.
async def add_member(info: Info, email: str, role: Role) -> Member:
    principal = await info.context.charge_user(Budget.MEMBERS_USER)
    member = await info.context.services.organizations.add_member(
        principal, email, role.to_domain(), info.context.client_ip
    )
    return Member.from_domain(member)


async def change_member_role(info: Info, user_id: strawberry.ID, role: Role) -> Member:
    principal = await info.context.charge_user(Budget.MEMBERS_USER)
    member = await info.context.services.organizations.change_role(
        principal, parse_id(user_id, "member"), role.to_domain(), info.context.client_ip
    )
    return Member.from_domain(member)


async def remove_member(info: Info, user_id: strawberry.ID) -> bool:
    principal = await info.context.charge_user(Budget.MEMBERS_USER)
    return await info.context.services.organizations.remove_member(
        principal, parse_id(user_id, "member"), info.context.client_ip
    )
