"""Plain helpers for tests: a GraphQL client over real HTTP, account factories and
scratch databases."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import asyncpg
import httpx
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from domain.entities import DocumentEvent, Principal, Role
from domain.services.accounts import RequestOrigin
from infrastructure.container import BackendUrls, Container
from infrastructure.database.migrate import upgrade_to_head
from infrastructure.embedded import EmbeddedPostgres
from infrastructure.settings import Settings

JSON = dict[str, object]
PASSWORD = "correct horse battery staple"

SIGN_UP = """
mutation SignUp($input: SignUpInput!) {
  signUp(input: $input) {
    accessToken refreshToken expiresIn
    user { id email }
    organization { id name role }
  }
}
"""
LOG_IN = """
mutation LogIn($input: LogInInput!) {
  logIn(input: $input) { accessToken refreshToken user { id } organization { id role } }
}
"""
REFRESH = """
mutation Refresh($token: String!) {
  refreshSession(refreshToken: $token) { accessToken refreshToken organization { id role } }
}
"""
ME = "query Me { me { id email } organization { id name role } }"


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.com"


@dataclass
class Account:
    email: str
    user_id: str
    organization_id: str
    access_token: str
    refresh_token: str


def _account(email: str, payload: JSON) -> Account:
    return Account(
        email=email,
        user_id=cast(str, cast(JSON, payload["user"])["id"]),
        organization_id=cast(str, cast(JSON, payload["organization"])["id"]),
        access_token=cast(str, payload["accessToken"]),
        refresh_token=cast(str, payload["refreshToken"]),
    )


class GraphQLClient:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def execute(
        self, query: str, variables: JSON | None = None, token: str | None = None
    ) -> JSON:
        headers = {"content-type": "application/json"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        # ASCII with escapes, as JSON.stringify sends it: httpx's own encoding is UTF-8,
        # which cannot carry the lone surrogates some tests send.
        body = json.dumps({"query": query, "variables": variables or {}})
        response = await self.http.post("/graphql", content=body, headers=headers)
        assert response.status_code == 200, response.text
        return cast(JSON, response.json())

    async def data(
        self, query: str, variables: JSON | None = None, token: str | None = None
    ) -> JSON:
        """The data of a call that must succeed."""
        body = await self.execute(query, variables, token)
        assert "errors" not in body, body
        return cast(JSON, body["data"])

    async def error_code(
        self, query: str, variables: JSON | None = None, token: str | None = None
    ) -> str:
        """The code of the first error of a call that must fail."""
        body = await self.execute(query, variables, token)
        errors = cast(list[JSON], body.get("errors"))
        assert errors, body
        return cast(str, cast(JSON, errors[0]["extensions"])["code"])

    async def assert_not_found(
        self, query: str, variables: JSON, token: str | None, field: str
    ) -> None:
        """A lookup of an id the caller may not see (unknown, malformed, deleted or
        another organisation's): ``field`` is null, with NOT_FOUND, as for a real miss."""
        body = await self.execute(query, variables, token)
        assert cast(JSON, body["data"])[field] is None, body
        errors = cast(list[JSON], body.get("errors"))
        assert errors and cast(JSON, errors[0]["extensions"])["code"] == "NOT_FOUND", body

    async def sign_up(
        self, email: str | None = None, organization_name: str | None = None
    ) -> Account:
        email = email or unique_email()
        data = await self.data(
            SIGN_UP,
            {
                "input": {
                    "email": email,
                    "password": PASSWORD,
                    "organizationName": organization_name,
                }
            },
        )
        return _account(email, cast(JSON, data["signUp"]))

    async def add_member(self, admin: Account, email: str, role: str = "EDITOR") -> None:
        """``email``'s account joins ``admin``'s organisation."""
        await self.data(
            "mutation($e: String!, $r: Role!) { addMember(email: $e, role: $r) { role } }",
            {"e": email, "r": role},
            token=admin.access_token,
        )

    async def log_in(self, email: str, organization_id: str | None = None) -> Account:
        data = await self.data(
            LOG_IN,
            {"input": {"email": email, "password": PASSWORD, "organizationId": organization_id}},
        )
        return _account(email, cast(JSON, data["logIn"]))


UPLOAD = """
mutation Upload($files: [Upload!]!) {
  uploadDocuments(files: $files) {
    filename
    document { id status filename mimeType sizeBytes sha256 }
    error { code message documentId }
  }
}
"""
DOCUMENT = """
query Doc($id: ID!) {
  document(id: $id) { id status errorCode pageCount chunkCount processedAt filename }
}
"""


async def upload(
    http: httpx.AsyncClient,
    token: str,
    files: list[tuple[str, bytes, str]],
    csrf: bool = True,
) -> httpx.Response:
    """A GraphQL multipart request (the spec Apollo/urql upload clients send)."""
    operations = {"query": UPLOAD, "variables": {"files": [None] * len(files)}}
    mapping = {str(i): [f"variables.files.{i}"] for i in range(len(files))}
    parts: list[tuple[str, tuple[str | None, bytes | str, str | None]]] = [
        ("operations", (None, json.dumps(operations), None)),
        ("map", (None, json.dumps(mapping), None)),
    ]
    parts += [(str(i), (name, data, mime)) for i, (name, data, mime) in enumerate(files)]
    headers = {"authorization": f"Bearer {token}"}
    if csrf:
        headers["x-requested-with"] = "foundry"
    return await http.post("/graphql", files=parts, headers=headers)


async def upload_outcomes(
    http: httpx.AsyncClient, token: str, files: list[tuple[str, bytes, str]]
) -> list[JSON]:
    response = await upload(http, token, files)
    body = response.json()
    assert "errors" not in body, body
    return cast(list[JSON], body["data"]["uploadDocuments"])


async def wait_for_document(
    api: GraphQLClient, token: str, document_id: str, seconds: float = 90
) -> JSON:
    """Poll until the document is READY or FAILED."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        data = await api.data(DOCUMENT, {"id": document_id}, token)
        document = cast(JSON, data["document"])
        if document["status"] in ("READY", "FAILED"):
            return document
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"document still {document['status']} after {seconds}s")
        await asyncio.sleep(0.2)


def admin_dsn_for(database_url: str) -> str:
    """asyncpg DSN of the server ``database_url`` names (embedded or not), as the same user:
    for what an administrator runs there (CREATE DATABASE, pg_terminate_backend)."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


async def scratch_database(urls: BackendUrls, prefix: str) -> str:
    """An empty database of its own beside the suite's, on the same server (for tests that
    change the schema); returns its URL, for migrating and a Container."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    url = make_url(urls.database_url).set(database=name).render_as_string(hide_password=False)
    # A URL still naming the suite's database would let the test alter the shared schema.
    assert make_url(url).database != make_url(urls.database_url).database, url
    conn = await asyncpg.connect(admin_dsn_for(urls.database_url))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return url


async def new_database(_server: EmbeddedPostgres, urls: BackendUrls, prefix: str) -> str:
    """scratch_database, for callers that still pass the embedded server: the database
    is made where ``urls`` point (FOUNDRY_TEST_DATABASE_URL's server, if set)."""
    return await scratch_database(urls, prefix)


async def isolated_container(  # the session fixtures it builds on
    settings: Settings,
    urls: BackendUrls,
    _server: EmbeddedPostgres,
    prefix: str,
    state_dir: Path | None = None,
    **overrides: object,
) -> Container:
    """A Container on a migrated scratch database and a Redis key prefix of its own, so no
    test worker takes its jobs; with its own state directory (stored files) if given.
    (``_server`` is unused: the database is made where ``urls`` point.)"""
    url = await scratch_database(urls, prefix)
    await asyncio.to_thread(upgrade_to_head, url, settings.database_app_role)
    update: dict[str, object] = {
        "database_url": SecretStr(url),
        "redis_key_prefix": f"{prefix}-{uuid.uuid4().hex[:8]}:",
        **overrides,
    }
    if state_dir is not None:
        update["state_dir"] = state_dir
    return Container(settings.model_copy(update=update), BackendUrls(url, urls.redis_url))


async def terminate_backend(connection: asyncpg.Connection, admin_dsn: str) -> None:
    """The server ends ``connection``'s backend (as a restart or an administrator
    would); returns once the driver has read the server's goodbye."""
    backend = await connection.fetchval("SELECT pg_backend_pid()")
    admin = await asyncpg.connect(admin_dsn)
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", backend)
    finally:
        await admin.close()
    for _ in range(200):
        if connection.is_closed():
            return
        await asyncio.sleep(0.01)


class Silent:
    """The job queue and event bus of a service a test builds itself: nothing leaves."""

    async def enqueue_ingest(self, document_id: uuid.UUID, organization_id: uuid.UUID) -> None:
        pass

    async def waiting(self, document_ids: Collection[uuid.UUID]) -> set[uuid.UUID]:
        return set()

    async def publish(self, event: DocumentEvent) -> None:
        pass

    def subscribe(self, organization_id: uuid.UUID) -> AsyncIterator[DocumentEvent]:
        raise NotImplementedError


async def new_admin(container: Container, label: str) -> Principal:
    """The admin of a new organisation, signed up through the service."""
    session = await container.services.accounts.sign_up(
        unique_email(label), PASSWORD, None, RequestOrigin()
    )
    return Principal(session.user.id, session.organization.id, Role.ADMIN, uuid.uuid4())
