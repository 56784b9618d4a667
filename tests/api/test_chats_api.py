"""Chats over HTTP: create, rename, delete, list, messages; owned by one user only."""

from __future__ import annotations

import base64
import uuid
from typing import cast

from tests.helpers import JSON, Account, GraphQLClient

CREATE = "mutation($t: String) { createChat(title: $t) { id title createdAt updatedAt } }"
RENAME = "mutation($id: ID!, $t: String!) { renameChat(id: $id, title: $t) { id title } }"
DELETE = "mutation($id: ID!) { deleteChat(id: $id) }"
GET = """
query($id: ID!, $first: Int, $after: String) {
  chat(id: $id) {
    id title
    messages(first: $first, after: $after) {
      pageInfo { hasNextPage endCursor }
      edges { cursor node { id role content degraded latencyMs sources { index } } }
    }
  }
}
"""
LIST = """
query($first: Int, $after: String) {
  chats(first: $first, after: $after) {
    pageInfo { hasNextPage endCursor }
    edges { cursor node { id title messages(first: 5) { edges { node { role content } } } } }
  }
}
"""
ASK = "mutation($c: ID!, $q: String!) { ask(chatId: $c, question: $q) { id role content } }"
ADD_MEMBER = "mutation($e: String!) { addMember(email: $e, role: EDITOR) { role } }"


async def create_chat(api: GraphQLClient, token: str, title: str | None = None) -> JSON:
    return cast(JSON, (await api.data(CREATE, {"t": title}, token))["createChat"])


async def chat_ids(api: GraphQLClient, token: str, first: int = 100) -> list[str]:
    data = cast(JSON, (await api.data(LIST, {"first": first}, token))["chats"])
    return [str(cast(JSON, edge["node"])["id"]) for edge in cast(list[JSON], data["edges"])]


async def test_create_rename_list_and_delete(api: GraphQLClient) -> None:
    account = await api.sign_up()
    token = account.access_token
    untitled = await create_chat(api, token)
    assert untitled["title"] == "New chat"
    named = await create_chat(api, token, "  Lighthouse   research ")
    assert named["title"] == "Lighthouse research"
    renamed = await api.data(RENAME, {"id": untitled["id"], "t": "Tides"}, token)
    assert cast(JSON, renamed["renameChat"])["title"] == "Tides"
    # Renaming counts as activity: the renamed chat is listed first.
    assert await chat_ids(api, token) == [untitled["id"], named["id"]]
    assert (await api.data(DELETE, {"id": named["id"]}, token))["deleteChat"] is True
    assert await chat_ids(api, token) == [untitled["id"]]
    await api.assert_not_found(GET, {"id": named["id"]}, token, "chat")
    assert await api.error_code(DELETE, {"id": named["id"]}, token) == "NOT_FOUND"


async def test_chats_are_paged_newest_activity_first(api: GraphQLClient) -> None:
    token = (await api.sign_up()).access_token
    created = [str((await create_chat(api, token, f"chat {i}"))["id"]) for i in range(5)]
    seen: list[str] = []
    after: object = None
    while True:
        data = cast(JSON, (await api.data(LIST, {"first": 2, "after": after}, token))["chats"])
        seen += [str(cast(JSON, e["node"])["id"]) for e in cast(list[JSON], data["edges"])]
        page_info = cast(JSON, data["pageInfo"])
        if not page_info["hasNextPage"]:
            break
        after = page_info["endCursor"]
    assert seen == list(reversed(created))


async def test_titles_and_page_sizes_are_validated(api: GraphQLClient) -> None:
    token = (await api.sign_up()).access_token
    assert await api.error_code(CREATE, {"t": "   "}, token) == "VALIDATION_FAILED"
    assert await api.error_code(CREATE, {"t": "x" * 201}, token) == "VALIDATION_FAILED"
    assert await api.error_code(LIST, {"first": 101}, token) == "VALIDATION_FAILED"
    assert await api.error_code(LIST, {"after": "bogus"}, token) == "VALIDATION_FAILED"
    # Well formed, but a time whose UTC is before year 1.
    early = base64.urlsafe_b64encode(f"0001-01-01T00:00:00+05:00|{uuid.uuid4()}".encode())
    assert await api.error_code(LIST, {"after": early.decode()}, token) == "VALIDATION_FAILED"
    chat = await create_chat(api, token)
    assert await api.error_code(GET, {"id": chat["id"], "first": 201}, token) == (
        "VALIDATION_FAILED"
    )
    assert await api.error_code(CREATE, {"t": "x"}) == "UNAUTHENTICATED"


async def test_a_chat_is_invisible_to_other_members_and_other_organisations(
    api: GraphQLClient,
) -> None:
    owner = await api.sign_up()
    colleague = await api.sign_up()
    await api.data(ADD_MEMBER, {"e": colleague.email}, owner.access_token)
    colleague_in_org: Account = await api.log_in(colleague.email, owner.organization_id)
    stranger = await api.sign_up()
    chat = await create_chat(api, owner.access_token, "private thoughts")
    await api.data(ASK, {"c": chat["id"], "q": "What is our payroll date?"}, owner.access_token)

    for intruder in (colleague_in_org, stranger):
        token = intruder.access_token
        await api.assert_not_found(GET, {"id": chat["id"]}, token, "chat")
        assert chat["id"] not in await chat_ids(api, token)
        for mutation, variables in [
            (RENAME, {"id": chat["id"], "t": "mine now"}),
            (DELETE, {"id": chat["id"]}),
            (ASK, {"c": chat["id"], "q": "What did they ask?"}),
        ]:
            assert await api.error_code(mutation, variables, token) == "NOT_FOUND"

    owned = cast(JSON, (await api.data(GET, {"id": chat["id"]}, owner.access_token))["chat"])
    assert owned["title"] == "private thoughts"
    edges = cast(list[JSON], cast(JSON, owned["messages"])["edges"])
    assert [cast(JSON, e["node"])["role"] for e in edges] == ["USER", "ASSISTANT"]


async def test_messages_are_paged_oldest_first(api: GraphQLClient) -> None:
    token = (await api.sign_up()).access_token
    chat = await create_chat(api, token)
    for question in ["first question?", "second question?", "third question?"]:
        await api.data(ASK, {"c": chat["id"], "q": question}, token)
    contents: list[str] = []
    after: object = None
    while True:
        data = await api.data(GET, {"id": chat["id"], "first": 4, "after": after}, token)
        messages = cast(JSON, cast(JSON, data["chat"])["messages"])
        contents += [
            str(cast(JSON, e["node"])["content"]) for e in cast(list[JSON], messages["edges"])
        ]
        page_info = cast(JSON, messages["pageInfo"])
        if not page_info["hasNextPage"]:
            break
        after = page_info["endCursor"]
    assert len(contents) == 6
    assert contents[0::2] == ["first question?", "second question?", "third question?"]
    # Listing chats loads each one's messages in the same request.
    listed = cast(JSON, (await api.data(LIST, {"first": 5}, token))["chats"])
    node = cast(JSON, cast(list[JSON], listed["edges"])[0]["node"])
    assert len(cast(list[JSON], cast(JSON, node["messages"])["edges"])) == 5
    # The first question named the chat.
    titled = cast(JSON, (await api.data(GET, {"id": chat["id"]}, token))["chat"])
    assert titled["title"] == "first question?"
