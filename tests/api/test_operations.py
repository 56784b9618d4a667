"""/healthz, /readyz, /metrics, request ids."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from pathlib import Path
from typing import cast

import asyncpg
import httpx
import pytest
from gql import Client, gql
from gql.transport.websockets import WebsocketsTransport
from pydantic import SecretStr
from redis.asyncio import Redis
from sqlalchemy import text

from infrastructure.container import BackendUrls, Container
from infrastructure.database.embedding_column import resize_embedding_column
from infrastructure.database.engine import create_engine, schema_readiness
from infrastructure.database.migrate import known_revisions, upgrade_to_head
from infrastructure.embedded import EmbeddedPostgres
from infrastructure.http.app import GIL_SWITCH_INTERVAL_SECONDS
from infrastructure.settings import Settings
from tests.conftest import ServerThread
from tests.helpers import ME, GraphQLClient, scratch_database
from tests.redis_server import RedisServer


async def test_health_and_readiness(http: httpx.AsyncClient) -> None:
    assert (await http.get("/healthz")).json() == {"status": "ok"}
    ready = await http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"database": "ok", "redis": "ok"}}


async def test_metrics_count_operations_by_name_and_outcome(
    http: httpx.AsyncClient, api: GraphQLClient
) -> None:
    account = await api.sign_up()
    await api.data(ME, token=account.access_token)
    await api.error_code(ME)
    text = (await http.get("/metrics")).text
    assert 'foundry_graphql_operations_total{operation="Me",outcome="ok",type="query"}' in text
    assert (
        'foundry_graphql_operations_total{operation="Me",outcome="UNAUTHENTICATED",type="query"}'
        in text
    )
    assert "foundry_graphql_operation_duration_seconds_bucket" in text
    assert 'foundry_http_requests_total{method="POST",route="/graphql",status="200"}' in text


def _events(caplog: pytest.LogCaptureFixture, event: str) -> list[dict[str, object]]:
    """Our structlog events as the stdlib handler received them (the event dicts)."""
    found = []
    for record in caplog.records:
        if isinstance(record.msg, dict) and record.msg.get("event") == event:
            found.append(cast(dict[str, object], record.msg))
    return found


async def test_an_operation_over_http_is_logged_on_its_request_line(
    server: ServerThread, api: GraphQLClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    account = await api.sign_up()
    caplog.clear()
    await api.data(ME, token=account.access_token)
    await api.error_code(ME)
    requests = [line for line in _events(caplog, "http.request") if line["path"] == "/graphql"]
    assert [(line["operation"], line["outcome"]) for line in requests] == [
        ("Me", "ok"),
        ("Me", "UNAUTHENTICATED"),
    ]
    assert requests[0]["type"] == "query"
    assert requests[0]["user_id"] == str(account.user_id)
    assert requests[0]["organization_id"] == str(account.organization_id)
    assert requests[1]["user_id"] is None
    assert all(isinstance(line["duration_ms"], float) for line in requests)
    assert _events(caplog, "graphql.operation") == []  # one line per request, not two

    # Over a WebSocket, many operations share the connection: each has a line of its own.
    transport = WebsocketsTransport(
        url=server.base_url.replace("http://", "ws://") + "/graphql",
        init_payload={"Authorization": f"Bearer {account.access_token}"},
        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
    )
    async with Client(transport=transport) as session:
        await session.execute(gql(ME))
        await session.execute(gql(ME))
    operations = _events(caplog, "graphql.operation")
    assert [(line["operation"], line["outcome"]) for line in operations] == [("Me", "ok")] * 2
    assert operations[0]["user_id"] == str(account.user_id)


async def test_the_started_app_froze_its_heap_and_shortened_the_gil_interval(
    http: httpx.AsyncClient,
) -> None:
    # The app runs in this process (uvicorn in a thread): its start-up froze the heap,
    # so full garbage collections no longer walk the libraries' objects.
    assert (await http.get("/readyz")).status_code == 200
    assert gc.get_freeze_count() > 10_000
    # ...and lets the model's thread win the GIL back quickly between torch operations.
    assert sys.getswitchinterval() == GIL_SWITCH_INTERVAL_SECONDS


async def test_request_id_is_echoed_or_created(http: httpx.AsyncClient) -> None:
    mine = await http.get("/healthz", headers={"x-request-id": "client-chosen-id-123"})
    assert mine.headers["x-request-id"] == "client-chosen-id-123"
    hostile = await http.get("/healthz", headers={"x-request-id": "bad id; drop table"})
    assert hostile.headers["x-request-id"] != "bad id; drop table"
    assert len(hostile.headers["x-request-id"]) == 32


async def test_readiness_reports_unreachable_redis_and_unmigrated_database(
    settings: Settings, embedded_postgres: EmbeddedPostgres
) -> None:
    conn = await asyncpg.connect(embedded_postgres.admin_dsn)
    try:
        if not await conn.fetchval(
            "SELECT 1 FROM pg_database WHERE datname = 'foundry_unmigrated'"
        ):
            await conn.execute('CREATE DATABASE "foundry_unmigrated"')
    finally:
        await conn.close()
    unmigrated_url = embedded_postgres.sqlalchemy_url().replace(
        "/foundry_test?", "/foundry_unmigrated?"
    )
    broken = settings.model_copy(update={"redis_url": SecretStr("redis://127.0.0.1:1/0")})
    container = Container(broken, BackendUrls(unmigrated_url, "redis://127.0.0.1:1/0"))
    try:
        checks = await asyncio.wait_for(container.readiness(), timeout=10)
    finally:
        await container.aclose()
    assert checks["database"] != "ok"
    assert checks["redis"].startswith("unreachable")


async def test_readiness_refuses_a_redis_that_evicts_keys(
    settings: Settings, urls: BackendUrls, tmp_path: Path
) -> None:
    """A memory limit with an evicting policy would drop session revocations and queued
    jobs under the answer cache's pressure: /readyz says so (503) until the policy is
    noeviction or the limit is gone, read again on every check."""
    own = RedisServer(tmp_path)
    own.start()
    server: ServerThread | None = None
    admin = Redis.from_url(own.url)
    try:
        await admin.config_set("maxmemory", "64mb")
        await admin.config_set("maxmemory-policy", "volatile-lru")
        server = ServerThread(settings, BackendUrls(urls.database_url, own.url))
        server.start()
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
            refused = await http.get("/readyz")
            assert refused.status_code == 503
            assert refused.json()["checks"]["redis"] == (
                "evicts keys (maxmemory 67108864 bytes, maxmemory-policy volatile-lru): "
                "set maxmemory-policy noeviction, or no maxmemory"
            )
            await admin.config_set("maxmemory-policy", "noeviction")
            assert (await http.get("/readyz")).json()["checks"]["redis"] == "ok"
            await admin.config_set("maxmemory-policy", "allkeys-lru")
            assert (await http.get("/readyz")).status_code == 503
            await admin.config_set("maxmemory", "0")  # no limit: nothing is ever evicted
            assert (await http.get("/readyz")).json()["checks"]["redis"] == "ok"
    finally:
        if server is not None:
            server.stop()
        await admin.aclose()
        own.stop()


async def test_readiness_trusts_a_redis_that_will_not_show_its_memory_policy(
    settings: Settings, urls: BackendUrls, tmp_path: Path
) -> None:
    """Managed services may rename CONFIG: the policy cannot be read, which is logged,
    and Redis still counts as ready (an unknown policy is no proof of eviction)."""
    own = RedisServer(tmp_path, "--rename-command", "CONFIG", "")
    own.start()
    container = Container(settings, BackendUrls(urls.database_url, own.url))
    try:
        for _ in range(2):  # warned once, ready every time
            checks = await asyncio.wait_for(container.readiness(), timeout=10)
            assert checks["redis"] == "ok", checks
    finally:
        await container.aclose()
        own.stop()


async def test_readiness_reports_a_query_embedder_that_failed_to_load(
    settings: Settings, urls: BackendUrls, tmp_path: Path
) -> None:
    """Every search would fail: the replica must not look ready."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    broken = settings.model_copy(
        update={"preload_models": True, "model_cache_dir": blocker / "models"}
    )
    server = ServerThread(broken, urls)
    server.start()
    try:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
            for _ in range(200):
                ready = await http.get("/readyz")
                if ready.json()["checks"]["models"] != "loading":
                    break
                await asyncio.sleep(0.05)
    finally:
        server.stop()
    assert ready.status_code == 503
    assert ready.json()["checks"]["models"].startswith("failed to load: ")


async def test_schema_readiness_allows_a_newer_release_but_not_an_older_schema(
    embedded_postgres: EmbeddedPostgres,
) -> None:
    """A rolling upgrade migrates first: old replicas stay ready on the newer schema;
    new code on an old schema is not ready."""
    admin = await asyncpg.connect(embedded_postgres.admin_dsn)
    try:
        await admin.execute('DROP DATABASE IF EXISTS "foundry_versions"')
        await admin.execute('CREATE DATABASE "foundry_versions"')
    finally:
        await admin.close()
    url = embedded_postgres.sqlalchemy_url().replace("/foundry_test?", "/foundry_versions?")
    engine = create_engine(url, pool_size=1, statement_timeout_ms=5_000)
    head, known = known_revisions()
    older = next(revision for revision in sorted(known) if revision != head)
    try:
        assert await schema_readiness(engine) == "not migrated: run foundry migrate"
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE alembic_version (version_num varchar(32))"))
            await conn.execute(text("INSERT INTO alembic_version VALUES (:v)"), {"v": older})
        assert await schema_readiness(engine) == (
            f"migrations behind: at {older}, this code needs {head} (run foundry migrate)"
        )
        for version, expected in ((head, "ok"), ("9999_from_a_newer_release", "ok")):
            async with engine.begin() as conn:
                await conn.execute(
                    text("UPDATE alembic_version SET version_num = :v"), {"v": version}
                )
            assert await schema_readiness(engine) == expected
    finally:
        await engine.dispose()


async def test_readiness_reports_an_embedding_column_of_another_dimension(
    settings: Settings, urls: BackendUrls
) -> None:
    """After `foundry reembed` with another embedder, a replica still on the old one
    would fail every search and answer: it must not look ready."""
    url = await scratch_database(urls, "foundry_dims")
    await asyncio.to_thread(upgrade_to_head, url, settings.database_app_role)
    container = Container(settings, BackendUrls(url, urls.redis_url))
    try:
        assert (await container.readiness())["database"] == "ok"
        await resize_embedding_column(container.engine, settings.embedding_dimensions * 2)
        checks = await asyncio.wait_for(container.readiness(), timeout=10)
    finally:
        await container.aclose()
    assert checks["database"] == (
        f"chunks.embedding holds vector({settings.embedding_dimensions * 2}) but this "
        f"embedder gives {settings.embedding_dimensions} dimensions "
        "(run foundry reembed, or fix FOUNDRY_EMBEDDING_*)"
    )
    assert checks["redis"] == "ok"
