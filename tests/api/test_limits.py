"""Query limits, body size, CSRF on multipart, GET never mutating, error masking."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import cast

import httpx
import pytest

from domain.services.organizations import OrganizationService
from tests.helpers import JSON, ME, REFRESH, GraphQLClient


async def test_too_deep_query_is_refused(api: GraphQLClient) -> None:
    account = await api.sign_up()
    nested = "organizations { members { user { %s } } }"
    deep = "{ me { " + nested % (nested % (nested % "email")) + " } }"
    assert await api.error_code(deep, token=account.access_token) == "QUERY_TOO_DEEP"


async def test_aliases_are_counted_through_fragments(api: GraphQLClient) -> None:
    account = await api.sign_up()
    fragment_aliases = " ".join(f"f{i}: id" for i in range(6))
    operation_aliases = " ".join(f"o{i}: id" for i in range(5))
    query = (
        f"query {{ me {{ ...Many {operation_aliases} }} }} "
        f"fragment Many on User {{ {fragment_aliases} }}"
    )
    assert await api.error_code(query, token=account.access_token) == "TOO_MANY_ALIASES"
    few = "query { me { ...F a: id } } fragment F on User { b: id }"
    await api.data(few, token=account.access_token)


async def test_too_many_tokens(api: GraphQLClient) -> None:
    query = "{ me { " + "id " * 1_100 + "} }"
    assert await api.error_code(query) == "TOO_MANY_TOKENS"


async def test_an_over_long_operation_text_is_refused_before_it_is_parsed(
    api: GraphQLClient, http: httpx.AsyncClient
) -> None:
    """Whitespace and string literals cost no tokens: the text's length has its own limit."""
    padded = "{ __typename" + " " * 8_000 + "}"
    response = await http.post("/graphql", json={"query": padded})
    error = response.json()["errors"][0]
    assert error["extensions"] == {"code": "REQUEST_TOO_LARGE", "maxChars": 8_000}
    assert "8013 characters long" in error["message"]
    assert await api.data("{ __typename" + " " * 7_000 + "}") == {"__typename": "Query"}


async def test_an_over_long_named_operation_is_refused_with_its_limit(
    http: httpx.AsyncClient,
) -> None:
    """Clients name their operations: the refusal must not depend on the name."""
    for text in (
        "query Named { __typename" + " " * 8_000 + "}",
        "mutation Named { __typename" + " " * 8_000 + "}",
    ):
        response = await http.post("/graphql", json={"query": text, "operationName": "Named"})
        error = response.json()["errors"][0]
        assert error["extensions"] == {"code": "REQUEST_TOO_LARGE", "maxChars": 8_000}


async def test_syntax_errors_have_a_code(api: GraphQLClient) -> None:
    assert await api.error_code("{ me { ") == "GRAPHQL_PARSE_FAILED"
    assert await api.error_code("{ nope }") == "GRAPHQL_VALIDATION_FAILED"


async def test_oversized_body_is_refused(http: httpx.AsyncClient) -> None:
    body = json.dumps({"query": "{ me { id } }", "variables": {"pad": "x" * 30_000}})
    response = await http.post(
        "/graphql", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["errors"][0]["extensions"]["code"] == "REQUEST_TOO_LARGE"


async def test_oversized_chunked_body_without_length_is_refused(http: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b" " * 4_000

    response = await http.post(
        "/graphql", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413


async def test_get_runs_queries_but_never_mutations(
    http: httpx.AsyncClient, api: GraphQLClient
) -> None:
    account = await api.sign_up()
    auth = {"authorization": f"Bearer {account.access_token}", "accept": "application/json"}
    response = await http.get("/graphql", params={"query": "{ me { email } }"}, headers=auth)
    assert response.json()["data"]["me"]["email"] == account.email
    mutation = f'mutation {{ logOut(refreshToken: "{account.refresh_token}") }}'
    refused = await http.get("/graphql", params={"query": mutation}, headers=auth)
    assert refused.status_code in (400, 405)
    # The session is still alive: the mutation did not run.
    await api.data(REFRESH, {"token": account.refresh_token})


async def test_multipart_needs_a_csrf_header(http: httpx.AsyncClient, api: GraphQLClient) -> None:
    account = await api.sign_up()
    files = {
        "operations": (None, json.dumps({"query": "{ me { email } }", "variables": {}})),
        "map": (None, "{}"),
    }
    auth = {"authorization": f"Bearer {account.access_token}"}
    refused = await http.post("/graphql", files=files, headers=auth)
    assert refused.status_code == 400
    assert refused.json()["errors"][0]["extensions"]["code"] == "CSRF_CHECK_FAILED"
    for header in ({"x-requested-with": "foundry"}, {"apollo-require-preflight": "true"}):
        accepted = await http.post("/graphql", files=files, headers={**auth, **header})
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["data"]["me"]["email"] == account.email


async def test_unexpected_errors_are_masked_with_a_request_id(
    api: GraphQLClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    account = await api.sign_up()

    async def explode(self: OrganizationService, principal: object) -> list[object]:
        raise RuntimeError("connection to db://admin:hunter2@db failed")

    monkeypatch.setattr(OrganizationService, "my_organizations", explode)
    body = await api.execute("{ me { organizations { id } } }", token=account.access_token)
    error = cast(list[JSON], body["errors"])[0]
    assert error["message"] == "Unexpected error."
    extensions = cast(JSON, error["extensions"])
    assert extensions["code"] == "INTERNAL"
    assert isinstance(extensions["requestId"], str)
    assert "hunter2" not in json.dumps(body)
    logged = [r for r in caplog.records if "graphql.unexpected_error" in r.getMessage()]
    assert logged, "the masked error must be logged for operators"
    assert extensions["requestId"] in logged[-1].getMessage()


async def test_me_still_works_after_limits(api: GraphQLClient) -> None:
    account = await api.sign_up()
    await api.data(ME, token=account.access_token)


async def test_subscriptions_over_http_are_refused_with_a_code(
    http: httpx.AsyncClient, api: GraphQLClient
) -> None:
    account = await api.sign_up()
    subscription = "subscription { documentEvents { progress } }"
    for token in (account.access_token, None):
        assert await api.error_code(subscription, None, token) == "WEBSOCKET_REQUIRED"
    auth = {"authorization": f"Bearer {account.access_token}", "accept": "application/json"}
    refused = await http.get("/graphql", params={"query": subscription}, headers=auth)
    assert refused.json()["errors"][0]["extensions"]["code"] == "WEBSOCKET_REQUIRED"
