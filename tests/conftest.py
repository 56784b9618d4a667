"""Shared fixtures: embedded PostgreSQL+pgvector, the real Redis, the app under uvicorn."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import cast

import httpx
import pytest
import uvicorn
from pydantic import SecretStr
from redis.asyncio import Redis

from infrastructure.container import BackendUrls, Container
from infrastructure.database.migrate import upgrade_to_head
from infrastructure.embedded import EmbeddedPostgres
from infrastructure.embeddings.local import MODEL_NAME, bundled_model_dir, default_model_cache_dir
from infrastructure.embeddings.onnx_model import ensure_quantized
from infrastructure.http.app import create_app
from infrastructure.http.server_config import uvicorn_config
from infrastructure.observability.logging import configure_logging
from infrastructure.settings import Settings
from tests.gemini_standin import GeminiStandIn, running_standin
from tests.helpers import GraphQLClient, admin_dsn_for

TEST_JWT_SECRET = "test-secret-" + "x7Kp2mQ9vR4sT8wZ" * 4
DEFAULT_TEST_REDIS_URL = "redis://127.0.0.1:6379/0"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session", autouse=True)
def _logging() -> None:
    """Logs go through the stdlib like in production, so tests can read them (caplog)."""
    configure_logging("INFO", json_logs=True)


@pytest.fixture(scope="session", autouse=True)
def _model_cache(pytestconfig: pytest.Config) -> None:
    """Exported (and int8) models for the tests and every process they start, kept under the
    checkout between runs (a fresh clone exports once, up front, not inside a request's
    timeout) rather than in the developer's own cache. Tests of the export use their own
    folders."""
    os.environ["XDG_CACHE_HOME"] = str(pytestconfig.rootpath / ".cache")
    ensure_quantized(bundled_model_dir(), default_model_cache_dir(), MODEL_NAME)  # exports too


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("foundry-state")


@pytest.fixture(scope="session")
def embedded_postgres(state_dir: Path) -> Iterator[EmbeddedPostgres]:
    """The embedded server: the suite's database unless FOUNDRY_TEST_DATABASE_URL is set
    (then only tests of the embedded server itself start it)."""
    server = EmbeddedPostgres(state_dir, "foundry_test")
    server.start()
    asyncio.run(server.ensure_database())
    yield server
    server.stop()


@pytest.fixture(scope="session")
def database_url(request: pytest.FixtureRequest) -> str:
    """FOUNDRY_TEST_DATABASE_URL (another PostgreSQL with pgvector), else the embedded
    server's database; migrated to head."""
    url = os.environ.get("FOUNDRY_TEST_DATABASE_URL")
    if not url:
        server = cast(EmbeddedPostgres, request.getfixturevalue("embedded_postgres"))
        url = server.sqlalchemy_url()
    upgrade_to_head(url, "foundry_app")
    return url


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The real Redis server; the suite fails (never skips) when it is not running."""
    url = os.environ.get("FOUNDRY_TEST_REDIS_URL", DEFAULT_TEST_REDIS_URL)

    async def ping() -> None:
        client = Redis.from_url(url)
        try:
            await client.ping()
        finally:
            await client.aclose()

    try:
        asyncio.run(ping())
    except Exception as exc:
        pytest.fail(
            f"Redis is not reachable at {url} ({exc}); "
            "start redis-server or set FOUNDRY_TEST_REDIS_URL"
        )
    return url


@pytest.fixture(scope="session")
def settings(state_dir: Path, database_url: str, redis_url: str) -> Settings:
    return Settings(
        _env_file=None,  # a developer's .env must not change what the tests run against
        environment="test",
        preload_models=False,
        state_dir=state_dir,
        database_url=SecretStr(database_url),
        redis_url=SecretStr(redis_url),
        redis_key_prefix=f"foundry-test-{uuid.uuid4().hex[:8]}:",
        jwt_secret=SecretStr(TEST_JWT_SECRET),
        argon2_time_cost=1,
        argon2_memory_cost_kib=1024,
        argon2_parallelism=1,
        graphql_max_depth=8,
        graphql_max_aliases=10,
        graphql_max_tokens=1_000,
        graphql_max_query_chars=8_000,
        graphql_max_body_bytes=20_000,
        upload_max_file_bytes=2_000_000,
        # Answer tests check what generation produced; tests/api/test_answer_cache.py
        # runs its own server with the cache on.
        answer_cache_enabled=False,
        log_json=True,
        # Rate-limit tests tell their clients apart by X-Forwarded-For.
        forwarded_allow_ips="127.0.0.1",
    )


@pytest.fixture(scope="session")
def urls(settings: Settings) -> BackendUrls:
    assert settings.database_url is not None and settings.redis_url is not None
    return BackendUrls(
        settings.database_url.get_secret_value(), settings.redis_url.get_secret_value()
    )


@pytest.fixture(scope="session")
def admin_dsn(urls: BackendUrls) -> str:
    """asyncpg DSN of the server the suite's database is on, embedded or not: for what an
    administrator does there (CREATE DATABASE, pg_terminate_backend)."""
    return admin_dsn_for(urls.database_url)


class ServerThread:
    """uvicorn serving the real app on a free port, in a thread with its own event loop."""

    def __init__(self, settings: Settings, urls: BackendUrls) -> None:
        self.port = free_port()
        # The configuration `foundry serve` runs with, on a free local port.
        local = settings.model_copy(update={"host": "127.0.0.1", "port": self.port})
        config = uvicorn_config(create_app(settings, urls), local)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture(scope="session")
def server(settings: Settings, urls: BackendUrls) -> Iterator[ServerThread]:
    thread = ServerThread(settings, urls)
    thread.start()
    yield thread
    thread.stop()


def worker_env(settings: Settings, **overrides: str) -> dict[str, str]:
    """Environment for a `foundry worker` child sharing the test's backends and storage."""
    assert settings.database_url is not None and settings.redis_url is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOUNDRY_")}
    env.update(
        {
            "FOUNDRY_ENVIRONMENT": "test",
            "FOUNDRY_DATABASE_URL": settings.database_url.get_secret_value(),
            "FOUNDRY_REDIS_URL": settings.redis_url.get_secret_value(),
            "FOUNDRY_STATE_DIR": str(settings.state_dir),
            "FOUNDRY_REDIS_KEY_PREFIX": settings.redis_key_prefix,
            "FOUNDRY_JWT_SECRET": TEST_JWT_SECRET,
            "FOUNDRY_WORKER_THREADS": "4",
            "FOUNDRY_WATCHDOG_INTERVAL_SECONDS": "2",
            # Every test worker beats often: the recovery tests' watchdogs, with timeouts
            # of seconds, see all documents in the one database and must never take one
            # a live worker is processing.
            "FOUNDRY_INGEST_HEARTBEAT_SECONDS": "0.3",
            "FOUNDRY_LOG_JSON": "true",
        }
    )
    env.update(overrides)
    return env


def cli_env(settings: Settings) -> dict[str, str]:
    """Environment for an operator's `foundry` command (reset-password, create-account) on
    the test's backends, with the test server's hashing cost, so that log-ins with the
    password it sets stay quick."""
    return worker_env(
        settings,
        FOUNDRY_ARGON2_TIME_COST=str(settings.argon2_time_cost),
        FOUNDRY_ARGON2_MEMORY_COST_KIB=str(settings.argon2_memory_cost_kib),
        FOUNDRY_ARGON2_PARALLELISM=str(settings.argon2_parallelism),
    )


@pytest.fixture(scope="module")
def closed_server(settings: Settings, urls: BackendUrls) -> Iterator[ServerThread]:
    """A test server with sign-up closed (FOUNDRY_SIGNUP=closed)."""
    server = ServerThread(settings.model_copy(update={"signup": "closed"}), urls)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def closed_api(closed_server: ServerThread) -> AsyncIterator[GraphQLClient]:
    async with httpx.AsyncClient(base_url=closed_server.base_url, timeout=30) as http:
        yield GraphQLClient(http)


class WorkerProcess:
    """A real `foundry worker` (Dramatiq consumers + watchdog) as a child process."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "infrastructure.cli", "worker"],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_started(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited:\n{self.log_path.read_text()[-4000:]}")
            if b"worker.started" in self.log_path.read_bytes():
                return
            time.sleep(0.1)
        raise RuntimeError(f"worker did not start:\n{self.log_path.read_text()[-4000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
        self._log.close()


@pytest.fixture(scope="session")
def worker(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    log_path = tmp_path_factory.mktemp("worker") / "worker.log"
    process = WorkerProcess(worker_env(settings), log_path)
    process.wait_started()
    yield process
    process.stop()


@pytest.fixture
async def http(server: ServerThread) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        yield client


@pytest.fixture
def api(http: httpx.AsyncClient) -> GraphQLClient:
    return GraphQLClient(http)


@pytest.fixture(scope="session")
async def container(settings: Settings, urls: BackendUrls) -> AsyncIterator[Container]:
    """The composition root in the test's own event loop, for direct service and DB access."""
    built = Container(settings, urls)
    yield built
    await built.aclose()


@pytest.fixture(scope="module")
def standin() -> Iterator[GeminiStandIn]:
    """A Gemini stand-in server for the module's tests (tests/gemini_standin.py)."""
    with running_standin() as server:
        yield server


@pytest.fixture
def gemini(standin: GeminiStandIn) -> Iterator[GeminiStandIn]:
    """The module's stand-in, with no scripted replies or recorded requests left over."""
    standin.reset()
    yield standin
    standin.reset()
