"""GraphQL abuse limits beyond tests/api/test_limits.py: fragments expanded (and in linear
time), batching refused, introspection and suggestions per environment, bounded `first`."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import cast

import httpx
import pytest

from infrastructure.container import BackendUrls
from infrastructure.settings import Settings
from tests.conftest import ServerThread
from tests.helpers import JSON, GraphQLClient

INTROSPECTION = '{ __schema { queryType { name } } __type(name: "User") { name } }'
TYPO = "{ me { emial } }"


async def test_aliases_count_every_time_a_fragment_is_spread(api: GraphQLClient) -> None:
    account = await api.sign_up()
    four = " ".join(f"a{i}: id" for i in range(4))
    spread_three_times = (
        "query { me { ...Four } organization { id } again: me { ...Four ...Four } } "
        f"fragment Four on User {{ {four} }}"
    )
    # 4 + 4 + 4 aliased fields in the fragment, and `again` itself: 13 > 10.
    assert await api.error_code(spread_three_times, token=account.access_token) == (
        "TOO_MANY_ALIASES"
    )
    once = f"query {{ me {{ ...Four }} }} fragment Four on User {{ {four} }}"
    assert await api.data(once, token=account.access_token)


def fragment_bomb(levels: int, leaf: str) -> str:
    """Each fragment spreads the next one twice: 2**levels expansions of ``leaf``."""
    fragments = " ".join(
        f"fragment F{i} on User {{ ...F{i + 1} ...F{i + 1} }}" for i in range(levels)
    )
    return f"query {{ me {{ ...F0 }} }} {fragments} fragment F{levels} on User {{ {leaf} }}"


async def test_a_fragment_bomb_is_counted_without_expanding_it(api: GraphQLClient) -> None:
    """2**40 aliases: a limiter that walked every expansion would never answer."""
    account = await api.sign_up()
    bomb = fragment_bomb(40, "x: id")
    assert await api.error_code(bomb, token=account.access_token) == "TOO_MANY_ALIASES"
    # Without aliases the same shape is a legal, shallow query that executes.
    data = await api.data(fragment_bomb(40, "id"), token=account.access_token)
    assert cast(JSON, data["me"])["id"] == account.user_id


async def test_depth_is_measured_through_fragments(api: GraphQLClient) -> None:
    account = await api.sign_up()
    nested = "organizations { members { user { ...Deeper } } }"
    deep = (
        f"query {{ me {{ {nested} }} }} "
        f"fragment Deeper on User {{ {nested.replace('...Deeper', '...Deepest')} }} "
        f"fragment Deepest on User {{ {nested.replace('...Deeper', 'email')} }}"
    )
    assert await api.error_code(deep, token=account.access_token) == "QUERY_TOO_DEEP"


async def test_batched_operations_are_refused_with_a_code(http: httpx.AsyncClient) -> None:
    batch = [{"query": "{ __typename }"}, {"query": "{ __typename }"}]
    response = await http.post("/graphql", json=batch)
    assert response.status_code == 400
    body = response.json()
    assert body["errors"][0]["extensions"]["code"] == "BATCHING_NOT_SUPPORTED"
    assert "data" not in body


async def test_introspection_and_suggestions_outside_production(api: GraphQLClient) -> None:
    data = await api.data(INTROSPECTION)
    assert data == {"__schema": {"queryType": {"name": "Query"}}, "__type": {"name": "User"}}
    account = await api.sign_up()
    body = await api.execute(TYPO, token=account.access_token)
    errors = cast(list[JSON], body["errors"])
    assert "Did you mean 'email'?" in cast(str, errors[0]["message"])


def production_settings(settings: Settings, **overrides: object) -> Settings:
    values = settings.model_dump()
    values.update(
        environment="production",
        redis_key_prefix=f"{settings.redis_key_prefix}prod-{uuid.uuid4().hex[:6]}:",
        **overrides,
    )
    return Settings(_env_file=None, **values)


@pytest.fixture(scope="module")
def production_server(settings: Settings, urls: BackendUrls) -> Iterator[ServerThread]:
    server = ServerThread(production_settings(settings), urls)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def production_api(production_server: ServerThread) -> AsyncIterator[GraphQLClient]:
    async with httpx.AsyncClient(base_url=production_server.base_url, timeout=30) as http:
        yield GraphQLClient(http)


async def test_production_hides_the_schema(production_api: GraphQLClient) -> None:
    assert await production_api.error_code(INTROSPECTION) == "GRAPHQL_VALIDATION_FAILED"
    body = await production_api.execute("{ __schema { types { name } } }")
    assert "data" not in body or body["data"] is None
    account = await production_api.sign_up()
    typo = await production_api.execute(TYPO, token=account.access_token)
    error = cast(list[JSON], typo["errors"])[0]
    assert error["message"] == "Cannot query field 'emial' on type 'User'."
    assert cast(JSON, error["extensions"])["code"] == "GRAPHQL_VALIDATION_FAILED"
    enum_typo = await production_api.execute(
        "query { documents(status: REDY) { totalCount } }", token=account.access_token
    )
    assert "Did you mean" not in str(enum_typo), enum_typo
    # __typename is not introspection of the schema: clients such as Apollo rely on it.
    assert await production_api.data("{ __typename }") == {"__typename": "Query"}


def test_introspection_setting_defaults_per_environment(settings: Settings) -> None:
    assert settings.introspection_enabled  # environment "test"
    assert not production_settings(settings).introspection_enabled
    assert production_settings(settings, graphql_introspection=True).introspection_enabled
    assert not Settings(
        _env_file=None, environment="development", graphql_introspection=False
    ).introspection_enabled


async def test_production_can_enable_introspection(settings: Settings, urls: BackendUrls) -> None:
    server = ServerThread(production_settings(settings, graphql_introspection=True), urls)
    server.start()
    try:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            data = await GraphQLClient(http).data(INTROSPECTION)
    finally:
        server.stop()
    assert cast(JSON, data["__schema"])["queryType"] == {"name": "Query"}


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        ("query($n: Int!) { documents(first: $n) { totalCount } }", {"n": 101}),
        ("query($n: Int!) { documents(first: $n) { totalCount } }", {"n": -1}),
        ("query($n: Int!) { chats(first: $n) { pageInfo { hasNextPage } } }", {"n": 101}),
        ('query($n: Int!) { search(query: "lighthouse", limit: $n) { score } }', {"n": 51}),
    ],
)
async def test_list_sizes_are_bounded(api: GraphQLClient, query: str, variables: JSON) -> None:
    account = await api.sign_up()
    body = await api.execute(query, variables, account.access_token)
    extensions = cast(JSON, cast(list[JSON], body["errors"])[0]["extensions"])
    assert extensions["code"] == "VALIDATION_FAILED", body


async def test_chat_messages_page_size_is_bounded(api: GraphQLClient) -> None:
    account = await api.sign_up()
    chat = await api.data("mutation { createChat { id } }", token=account.access_token)
    chat_id = cast(JSON, chat["createChat"])["id"]
    query = (
        "query($id: ID!, $n: Int!) { chat(id: $id) { messages(first: $n) { edges { cursor } } } }"
    )
    body = await api.execute(query, {"id": chat_id, "n": 201}, account.access_token)
    extensions = cast(JSON, cast(list[JSON], body["errors"])[0]["extensions"])
    assert extensions["code"] == "VALIDATION_FAILED"
    ok = await api.data(query, {"id": chat_id, "n": 200}, account.access_token)
    assert ok == {"chat": {"messages": {"edges": []}}}


async def test_out_of_range_integers_are_refused_before_any_resolver(api: GraphQLClient) -> None:
    account = await api.sign_up()
    code = await api.error_code(
        "query { documents(first: 99999999999) { totalCount } }", token=account.access_token
    )
    assert code == "GRAPHQL_VALIDATION_FAILED"
