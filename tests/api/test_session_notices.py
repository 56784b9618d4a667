"""A documentEvents stream ends before its next event once its session is logged out,
removed or changed, or its API key revoked: every API process hears of it through Redis,
without waiting for the stream's periodic re-check."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Sequence
from typing import cast

import httpx
import pytest
from gql import gql
from gql.transport.exceptions import TransportQueryError

import resolvers.documents
from tests.api.test_api_keys import REVOKE, create_key
from tests.api.test_members import ADD, CHANGE, REMOVE
from tests.api.test_review_regressions import socket
from tests.conftest import ServerThread
from tests.helpers import JSON, GraphQLClient, upload_outcomes

EVENTS = gql("subscription { documentEvents { document { id status } } }")
SUBSCRIBERS = re.compile(r"^foundry_document_event_subscribers (\S+)$", re.MULTILINE)


async def subscribers(http: httpx.AsyncClient) -> float:
    """The server's open documentEvents subscriptions, each counted once it listens."""
    found = SUBSCRIBERS.search((await http.get("/metrics")).text)
    assert found is not None, "/metrics has no foundry_document_event_subscribers"
    return float(found.group(1))


async def until_subscribers(
    http: httpx.AsyncClient, done: Callable[[float], bool], streams: Sequence[asyncio.Task[str]]
) -> None:
    """Until the count of open subscriptions is ``done``; fails should a stream end first."""
    deadline = time.monotonic() + 30
    while not done(count := await subscribers(http)):
        for stream in streams:
            if stream.done():
                raise AssertionError(f"a stream ended ({stream.result()}) before it listened")
        assert time.monotonic() < deadline, f"the subscriptions never got there ({count} open)"
        await asyncio.sleep(0.05)


async def _stream(server: ServerThread, token: str, sink: list[str], opened: asyncio.Event) -> str:
    """Collect a documentEvents stream's document ids until it ends; its end's code."""
    try:
        async with socket(server, token) as session:
            opened.set()
            async for result in session.subscribe(EVENTS):
                sink.append(str(cast(JSON, cast(JSON, result["documentEvents"])["document"])["id"]))
    except TransportQueryError as exc:
        return str(cast(JSON, (exc.errors or [{}])[0].get("extensions") or {}).get("code"))
    return "completed"


ENDINGS = {
    "log_out": "UNAUTHENTICATED",
    "removal": "UNAUTHENTICATED",
    "demotion": "TOKEN_EXPIRED",
    "key_revoked": "UNAUTHENTICATED",
}


@pytest.mark.parametrize("ending", list(ENDINGS))
async def test_document_events_stop_at_once_for_a_session_that_ended(
    server: ServerThread,
    api: GraphQLClient,
    http: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    ending: str,
) -> None:
    # Without the notice, the stream would only re-check its session every hour here.
    monkeypatch.setattr(resolvers.documents, "SESSION_RECHECK_SECONDS", 3600.0)
    owner = await api.sign_up()
    member = await api.sign_up()
    await api.data(ADD, {"e": member.email, "r": "EDITOR"}, owner.access_token)
    ending_session = await api.log_in(member.email, organization_id=owner.organization_id)
    key, api_key = await create_key(api, owner)
    ending_token = key if ending == "key_revoked" else ending_session.access_token
    ended: list[str] = []
    kept: list[str] = []
    opened = [asyncio.Event(), asyncio.Event()]
    before = await subscribers(http)
    ended_task = asyncio.create_task(_stream(server, ending_token, ended, opened[0]))
    kept_task = asyncio.create_task(_stream(server, owner.access_token, kept, opened[1]))
    try:
        # Both subscriptions listen before the session ends and the document's events go
        # out: one that missed them would prove nothing.
        await until_subscribers(http, lambda count: count >= before + 2, [ended_task, kept_task])
        if ending == "log_out":
            await api.data(
                "mutation($t: String!) { logOut(refreshToken: $t) }",
                {"t": ending_session.refresh_token},
            )
        elif ending == "key_revoked":
            await api.data(REVOKE, {"id": api_key["id"]}, owner.access_token)
        elif ending == "removal":
            await api.data(REMOVE, {"u": member.user_id}, owner.access_token)
        else:
            await api.data(CHANGE, {"u": member.user_id, "r": "VIEWER"}, owner.access_token)
        text = b"After the session ended. " * 20
        [outcome] = await upload_outcomes(
            http, owner.access_token, [("notice.txt", text, "text/plain")]
        )
        document_id = str(cast(JSON, outcome["document"])["id"])
        ended_with = await asyncio.wait_for(ended_task, timeout=30)
        for _ in range(300):
            if document_id in kept:
                break
            await asyncio.sleep(0.05)
    finally:
        kept_task.cancel()
        await asyncio.gather(ended_task, kept_task, return_exceptions=True)
    # Both closed on the server too, so the next test counts only its own.
    await until_subscribers(http, lambda count: count <= before, [])
    assert document_id in kept  # the event was sent, to the session still open
    assert document_id not in ended
    assert ended_with == ENDINGS[ending]
