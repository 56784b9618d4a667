"""FOUNDRY_SIGNUP=closed: signUp is refused and writes nothing; existing accounts go on."""

from __future__ import annotations

from typing import cast

import httpx
import pytest
from sqlalchemy import func, select

from infrastructure.container import Container
from infrastructure.database.models import (
    AuditLogRow,
    MembershipRow,
    OrganizationRow,
    RefreshTokenRow,
    UserRow,
)
from infrastructure.settings import Settings
from tests.api.test_login_after_removal import removed_from_their_only_organisation
from tests.api.test_members import ADD
from tests.helpers import (
    JSON,
    LOG_IN,
    ME,
    PASSWORD,
    REFRESH,
    SIGN_UP,
    GraphQLClient,
    unique_email,
)


async def account_row_counts(container: Container) -> dict[str, int]:
    """Rows of every table an account's making or ending writes, by table name."""
    counts: dict[str, int] = {}
    async with container.session_factory() as session:
        for table in (UserRow, OrganizationRow, MembershipRow, RefreshTokenRow, AuditLogRow):
            counts[table.__tablename__] = int(
                await session.scalar(select(func.count()).select_from(table)) or 0
            )
    return counts


def test_sign_up_is_open_unless_closed() -> None:
    assert Settings(_env_file=None).signup == "open"
    assert Settings(_env_file=None, signup="closed").signup == "closed"
    with pytest.raises(ValueError, match="signup"):
        Settings(_env_file=None, signup="invite-only")


async def test_closed_sign_up_is_refused_and_writes_nothing(
    closed_api: GraphQLClient, api: GraphQLClient, container: Container
) -> None:
    existing = await api.sign_up()  # through the open server
    before = await account_row_counts(container)
    for email in (unique_email("closed"), existing.email):
        body = await closed_api.execute(
            SIGN_UP, {"input": {"email": email, "password": PASSWORD, "organizationName": None}}
        )
        assert body.get("errors"), body
        [error] = cast(list[JSON], body["errors"])
        # The same answer for a taken email: closed sign-up tells nobody who has an account.
        assert cast(JSON, error["extensions"])["code"] == "SIGNUP_CLOSED", body
        assert "ask an admin of your organisation" in str(error["message"]), body
        assert body["data"] is None, body
    assert await account_row_counts(container) == before


async def test_existing_accounts_log_in_refresh_and_join_organisations(
    closed_api: GraphQLClient, api: GraphQLClient
) -> None:
    admin = await api.sign_up()
    colleague = await api.sign_up()
    session = await closed_api.log_in(admin.email)
    me = await closed_api.data(ME, token=session.access_token)
    assert cast(JSON, me["me"])["email"] == admin.email
    refreshed = await closed_api.data(REFRESH, {"token": session.refresh_token})
    assert cast(JSON, refreshed["refreshSession"])["accessToken"]
    added = await closed_api.data(
        ADD, {"e": colleague.email, "r": "EDITOR"}, token=session.access_token
    )
    assert cast(JSON, added["addMember"])["role"] == "EDITOR"
    joined = await closed_api.log_in(colleague.email, admin.organization_id)
    assert joined.organization_id == admin.organization_id


async def test_closed_sign_up_gives_no_new_organisation_to_someone_removed_from_all(
    closed_api: GraphQLClient, api: GraphQLClient, http: httpx.AsyncClient, container: Container
) -> None:
    """With sign-up open, such a log-in makes a personal organisation; closed, it is
    refused and makes nothing: an admin's removal is not undone by logging in again."""
    removed = await removed_from_their_only_organisation(api, http)
    before = await account_row_counts(container)
    body = await closed_api.execute(
        LOG_IN, {"input": {"email": removed.member.email, "password": PASSWORD}}
    )
    [error] = cast(list[JSON], body["errors"])
    assert cast(JSON, error["extensions"])["code"] == "FORBIDDEN", body
    assert "ask an admin to add you" in str(error["message"])
    after = await account_row_counts(container)
    assert after["organizations"] == before["organizations"]
    assert after["memberships"] == before["memberships"]
