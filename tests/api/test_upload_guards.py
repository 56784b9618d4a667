"""Multipart uploads refused before they cost anything: one file part mapped to many
positions (the organisation's budget stays whole), the same part twice, a viewer (or a
viewer's API key) refused before its body is read, and uploads running at once bounded
per user (the user's connection slots, shared with WebSockets)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import cast
from urllib.parse import urlsplit

import httpx
import pytest

from infrastructure.container import BackendUrls
from infrastructure.settings import Settings
from tests.api.test_api_keys import create_key
from tests.api.test_rate_limits import connect, released, start_limited_server
from tests.conftest import ServerThread
from tests.helpers import JSON, UPLOAD, GraphQLClient, upload, upload_outcomes

DOCUMENT_COUNT = "{ documents { totalCount } }"


async def _mapped(
    http: httpx.AsyncClient, token: str, positions: list[str], data: bytes
) -> httpx.Response:
    """One file part, mapped to each of ``positions`` (variables.files.N)."""
    operations = {"query": UPLOAD, "variables": {"files": [None] * len(positions)}}
    parts: list[tuple[str, tuple[str | None, bytes | str, str | None]]] = [
        ("operations", (None, json.dumps(operations), None)),
        ("map", (None, json.dumps({"0": positions}), None)),
        ("0", ("tides.txt", data, "text/plain")),
    ]
    headers = {"authorization": f"Bearer {token}", "x-requested-with": "foundry"}
    return await http.post("/graphql", files=parts, headers=headers)


def _error(response: httpx.Response) -> JSON:
    errors = cast(list[JSON], response.json()["errors"])
    return errors[0]


async def test_one_part_mapped_to_many_positions_is_refused_before_the_budget_is_charged(
    http: httpx.AsyncClient, api: GraphQLClient, settings: Settings
) -> None:
    account = await api.sign_up()
    # As many positions as the organisation's whole upload budget (600 an hour).
    positions = [f"variables.files.{i}" for i in range(600)]
    response = await _mapped(http, account.access_token, positions, b"one small file")
    limit = settings.upload_max_files
    error = _error(response)
    assert cast(JSON, error["extensions"]) == {"code": "TOO_MANY_FILES", "maxFiles": limit}
    # Nothing was charged: the organisation still uploads.
    [outcome] = await upload_outcomes(
        http, account.access_token, [("after.txt", f"after {uuid.uuid4()}".encode(), "text/plain")]
    )
    assert outcome["error"] is None, outcome


async def test_the_same_part_at_two_positions_is_refused(
    http: httpx.AsyncClient, api: GraphQLClient
) -> None:
    account = await api.sign_up()
    positions = ["variables.files.0", "variables.files.1"]
    response = await _mapped(http, account.access_token, positions, b"read once, not twice")
    error = _error(response)
    assert cast(JSON, error["extensions"]) == {"code": "VALIDATION_FAILED", "field": "files"}
    assert (await api.data(DOCUMENT_COUNT, token=account.access_token)) == {
        "documents": {"totalCount": 0}
    }


async def _response_head_before_the_body_ends(
    server: ServerThread, token: str
) -> tuple[int, bytes]:
    """Send a multipart upload's headers and its first bytes, announcing ten megabytes,
    and read the answer without sending the rest: (status, body)."""
    address = urlsplit(server.base_url)
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    boundary = "foundryboundary"
    first = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="operations"\r\n\r\n'
        + json.dumps({"query": UPLOAD, "variables": {"files": [None]}})
        + f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="map"\r\n\r\n'
        + json.dumps({"0": ["variables.files.0"]})
        + f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="0"; '
        + 'filename="big.txt"\r\nContent-Type: text/plain\r\n\r\n'
    ).encode() + b"x" * 1024
    head = (
        f"POST /graphql HTTP/1.1\r\nHost: {address.netloc}\r\n"
        f"Authorization: Bearer {token}\r\nX-Requested-With: foundry\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {10 * 1024 * 1024}\r\n\r\n"
    ).encode()
    try:
        writer.write(head + first)
        await writer.drain()
        async with asyncio.timeout(15):  # the server would wait for the rest for ever
            status_line = await reader.readline()
            headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers["content-length"]))
    finally:
        writer.close()
    return int(status_line.split()[1]), body


async def test_a_viewer_is_refused_before_its_upload_is_read(
    server: ServerThread, api: GraphQLClient
) -> None:
    owner = await api.sign_up()
    viewer = await api.sign_up()
    await api.add_member(owner, viewer.email, "VIEWER")
    session = await api.log_in(viewer.email, organization_id=owner.organization_id)
    status, body = await _response_head_before_the_body_ends(server, session.access_token)
    assert status == 403
    [error] = json.loads(body)["errors"]
    assert error["extensions"] == {"code": "FORBIDDEN"}
    assert error["message"] == "This needs the editor role."  # as uploadDocuments says it


async def test_a_viewers_api_key_is_refused_before_its_upload_is_read(
    http: httpx.AsyncClient, api: GraphQLClient
) -> None:
    admin = await api.sign_up()
    key, _ = await create_key(api, admin, role="VIEWER")
    refused = await upload(http, key, [("a.txt", b"tides", "text/plain")])
    assert refused.status_code == 403
    assert _error(refused)["extensions"] == {"code": "FORBIDDEN"}
    editor_key, _ = await create_key(api, admin, role="EDITOR")
    [outcome] = await upload_outcomes(
        http, editor_key, [("a.txt", f"tides {uuid.uuid4()}".encode(), "text/plain")]
    )
    assert outcome["error"] is None, outcome


@pytest.fixture(scope="module")
def one_connection_server(settings: Settings, urls: BackendUrls) -> Iterator[ServerThread]:
    server = start_limited_server(settings, urls, {"ws_connections_user": "1"})
    yield server
    server.stop()


async def test_uploads_at_once_are_bounded_by_the_users_connection_slots(
    one_connection_server: ServerThread,
) -> None:
    async with httpx.AsyncClient(base_url=one_connection_server.base_url, timeout=30) as http:
        api = GraphQLClient(http)
        account = await api.sign_up()
        ws = await connect(one_connection_server, account.access_token)  # holds the one slot
        try:
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            refused = await upload(http, account.access_token, [("a.txt", b"x", "text/plain")])
            assert refused.status_code == 429
            extensions = cast(JSON, _error(refused)["extensions"])
            assert extensions["code"] == "RATE_LIMITED"
            assert cast(int, extensions["retryAfter"]) >= 1
        finally:
            await ws.close()
        await released(one_connection_server, account.access_token)
        [outcome] = await upload_outcomes(
            http, account.access_token, [("a.txt", f"tides {uuid.uuid4()}".encode(), "text/plain")]
        )
        assert outcome["error"] is None, outcome
        # The upload gave its slot back: a socket can take it again.
        await released(one_connection_server, account.access_token)
