"""addMember tells nobody but an admin whether an email has an account: a caller who
may not add members gets FORBIDDEN whether or not the email is registered."""

from __future__ import annotations

import uuid

import pytest

from domain.entities import Principal, Role
from domain.errors import Forbidden
from domain.services.accounts import RequestOrigin
from infrastructure.container import Container
from tests.api.test_api_keys import create_key
from tests.api.test_members import ADD
from tests.helpers import PASSWORD, GraphQLClient, unique_email


async def _codes_for(api: GraphQLClient, token: str, registered: str) -> list[str]:
    """addMember's code for an unknown email, a registered one, and no email at all."""
    return [
        await api.error_code(ADD, {"e": email, "r": "VIEWER"}, token)
        for email in (unique_email("nobody"), registered, "not an email")
    ]


async def test_an_admin_api_key_cannot_probe_for_accounts(api: GraphQLClient) -> None:
    admin = await api.sign_up()
    outsider = await api.sign_up()
    key, _ = await create_key(api, admin, role="ADMIN")
    assert await _codes_for(api, key, outsider.email) == ["FORBIDDEN"] * 3


async def test_a_member_who_is_no_admin_cannot_probe_for_accounts(api: GraphQLClient) -> None:
    admin = await api.sign_up()
    outsider = await api.sign_up()
    for role in ("VIEWER", "EDITOR"):
        member = await api.sign_up()
        await api.add_member(admin, member.email, role)
        inside = await api.log_in(member.email, organization_id=admin.organization_id)
        assert await _codes_for(api, inside.access_token, outsider.email) == ["FORBIDDEN"] * 3


async def test_an_admin_demoted_since_their_token_was_issued_cannot_probe(
    container: Container,
) -> None:
    """The token's role may be minutes old; the membership as it is now decides, and it
    decides before the email is looked up."""
    accounts, organizations = container.services.accounts, container.services.organizations
    origin = RequestOrigin()
    owner = await accounts.sign_up(unique_email(), PASSWORD, None, origin)
    former = await accounts.sign_up(unique_email(), PASSWORD, None, origin)
    outsider = await accounts.sign_up(unique_email(), PASSWORD, None, origin)
    owner_admin = Principal(owner.user.id, owner.organization.id, Role.ADMIN, uuid.uuid4())
    await organizations.add_member(owner_admin, former.user.email, Role.ADMIN, ip=None)
    await organizations.change_role(owner_admin, former.user.id, Role.VIEWER, ip=None)

    stale = Principal(former.user.id, owner.organization.id, Role.ADMIN, uuid.uuid4())
    for email in (unique_email("nobody"), outsider.user.email):
        with pytest.raises(Forbidden):
            await organizations.add_member(stale, email, Role.VIEWER, ip=None)
