"""The paging contract every connection and list shares: a null page size is the default
(code generators send unset variables as null), and PageInfo carries Relay's fields."""

from __future__ import annotations

import uuid
from typing import cast

import httpx

from tests.conftest import WorkerProcess
from tests.helpers import JSON, GraphQLClient, upload_outcomes, wait_for_document

PAGE_INFO = "pageInfo { hasNextPage hasPreviousPage startCursor endCursor }"
DOCUMENTS = f"""
query($first: Int, $after: String, $status: DocumentStatus) {{
  documents(first: $first, after: $after, status: $status) {{
    totalCount {PAGE_INFO} edges {{ cursor node {{ id }} }}
  }}
}}
"""
CHATS = f"""
query($first: Int, $after: String) {{
  chats(first: $first, after: $after) {{ {PAGE_INFO} edges {{ cursor node {{ id }} }} }}
}}
"""
MESSAGES = f"""
query($id: ID!, $first: Int, $after: String) {{
  chat(id: $id) {{
    messages(first: $first, after: $after) {{ {PAGE_INFO} edges {{ cursor node {{ id }} }} }}
  }}
}}
"""
API_KEYS = f"""
query($first: Int, $after: String) {{
  apiKeys(first: $first, after: $after) {{
    totalCount {PAGE_INFO} edges {{ cursor node {{ id }} }}
  }}
}}
"""
AUDIT = f"""
query($first: Int, $after: String) {{
  auditLog(first: $first, after: $after) {{ {PAGE_INFO} edges {{ cursor node {{ action }} }} }}
}}
"""
SEARCH = """
query($q: String!, $limit: Int) { search(query: $q, limit: $limit) { chunkId score } }
"""
CREATE_CHAT = "mutation($t: String) { createChat(title: $t) { id } }"
ASK = "mutation($c: ID!, $q: String!) { ask(chatId: $c, question: $q) { id } }"
CREATE_KEY = """
mutation($name: String!) { createApiKey(input: {name: $name, role: VIEWER}) { key } }
"""


def _connection(data: JSON) -> JSON:
    """The one connection in ``data`` (under ``chat`` for messages)."""
    [value] = data.values()
    connection = cast(JSON, value)
    return cast(JSON, connection["messages"]) if "messages" in connection else connection


def _check_page_info(connection: JSON) -> JSON:
    """PageInfo agrees with the edges: startCursor/endCursor are the first and last edge's
    cursors (null without edges) and hasPreviousPage is false (forward-only paging)."""
    edges = cast(list[JSON], connection["edges"])
    page_info = cast(JSON, connection["pageInfo"])
    assert page_info["startCursor"] == (edges[0]["cursor"] if edges else None)
    assert page_info["endCursor"] == (edges[-1]["cursor"] if edges else None)
    assert page_info["hasPreviousPage"] is False
    return page_info


async def test_null_page_sizes_are_the_defaults(
    http: httpx.AsyncClient, api: GraphQLClient
) -> None:
    account = await api.sign_up()
    token = account.access_token
    files = [(f"n-{i}.txt", f"note {i} {account.email}".encode(), "text/plain") for i in range(21)]
    await upload_outcomes(http, token, files[:20])
    await upload_outcomes(http, token, files[20:])
    documents = cast(JSON, (await api.data(DOCUMENTS, {"first": None}, token))["documents"])
    assert len(cast(list[JSON], documents["edges"])) == 20
    assert cast(JSON, documents["pageInfo"])["hasNextPage"] is True
    assert documents["totalCount"] == 21
    assert await api.data(DOCUMENTS, {"first": None}, token) == await api.data(DOCUMENTS, {}, token)

    chat_id = cast(JSON, (await api.data(CREATE_CHAT, {"t": "paging"}, token))["createChat"])["id"]
    await api.data(ASK, {"c": chat_id, "q": "What do the notes say?"}, token)
    await api.data(CREATE_KEY, {"name": "paging"}, token)
    calls: list[tuple[str, JSON]] = [
        (CHATS, {}),
        (MESSAGES, {"id": chat_id}),
        (API_KEYS, {}),
        (AUDIT, {}),
    ]
    for query, variables in calls:
        with_null = await api.data(query, {**variables, "first": None}, token)
        assert with_null == await api.data(query, variables, token)
        assert cast(list[JSON], _connection(with_null)["edges"])

    # Values out of range are still refused.
    for query, variables in [*calls, (DOCUMENTS, {})]:
        refused = await api.error_code(query, {**variables, "first": -1}, token)
        assert refused == "VALIDATION_FAILED"


async def test_null_search_limit_is_the_default(
    http: httpx.AsyncClient, api: GraphQLClient, worker: WorkerProcess
) -> None:
    account = await api.sign_up()
    token = account.access_token
    files = [
        (f"light-{i}.txt", f"The lighthouse log, entry {i}: {uuid.uuid4()}".encode(), "text/plain")
        for i in range(10)
    ]
    for outcome in await upload_outcomes(http, token, files):
        document_id = str(cast(JSON, outcome["document"])["id"])
        assert (await wait_for_document(api, token, document_id))["status"] == "READY"
    with_null = await api.data(SEARCH, {"q": "lighthouse log", "limit": None}, token)
    assert with_null == await api.data(SEARCH, {"q": "lighthouse log"}, token)
    assert len(cast(list[JSON], with_null["search"])) == 8
    assert await api.error_code(SEARCH, {"q": "lighthouse", "limit": 51}, token) == (
        "VALIDATION_FAILED"
    )


async def test_every_connection_has_start_cursor_and_has_previous_page(
    http: httpx.AsyncClient, api: GraphQLClient
) -> None:
    account = await api.sign_up()
    token = account.access_token

    empty = cast(JSON, (await api.data(DOCUMENTS, {}, token))["documents"])
    assert _check_page_info(empty)["startCursor"] is None
    empty_chats = cast(JSON, (await api.data(CHATS, {}, token))["chats"])
    assert _check_page_info(empty_chats)["startCursor"] is None

    files = [(f"p-{i}.txt", f"page {i} {account.email}".encode(), "text/plain") for i in range(3)]
    await upload_outcomes(http, token, files)
    chat_ids = []
    for title in ("one", "two", "three"):
        created = cast(JSON, (await api.data(CREATE_CHAT, {"t": title}, token))["createChat"])
        chat_ids.append(created["id"])
    await api.data(ASK, {"c": chat_ids[0], "q": "Anything about pages?"}, token)
    for name in ("first key", "second key", "third key"):
        await api.data(CREATE_KEY, {"name": name}, token)

    calls: list[tuple[str, JSON]] = [
        (DOCUMENTS, {}),
        (CHATS, {}),
        (MESSAGES, {"id": chat_ids[0]}),
        (API_KEYS, {}),
        (AUDIT, {}),
    ]
    for query, variables in calls:
        first_page = _connection(await api.data(query, {**variables, "first": 1}, token))
        page_info = _check_page_info(first_page)
        assert page_info["startCursor"] is not None and page_info["hasNextPage"] is True
        after = page_info["endCursor"]
        second_page = _connection(
            await api.data(query, {**variables, "first": 1, "after": after}, token)
        )
        assert _check_page_info(second_page)["startCursor"] != page_info["startCursor"]
        nothing = _connection(await api.data(query, {**variables, "first": 0}, token))
        assert _check_page_info(nothing)["startCursor"] is None


async def test_datetime_is_described_as_utc_with_an_offset(api: GraphQLClient) -> None:
    account = await api.sign_up()
    data = await api.data('{ __type(name: "DateTime") { description } }')
    description = str(cast(JSON, data["__type"])["description"])
    assert "ISO 8601" in description and "+00:00" in description and "UTC" in description
    me = await api.data("{ me { createdAt } }", token=account.access_token)
    assert str(cast(JSON, me["me"])["createdAt"]).endswith("+00:00")
