"""What several bench scripts share: backends in a temporary directory, a worker process,
uploads through the document service, and the table + JSON report."""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import psutil
from pydantic import SecretStr

from domain.entities import Principal, Role
from domain.ingestion.ports import IncomingFile
from domain.services.accounts import RequestOrigin
from infrastructure.container import BackendUrls, Container
from infrastructure.database.migrate import upgrade_to_head
from infrastructure.embedded import EmbeddedPostgres
from infrastructure.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
REDIS_URL = os.environ.get("FOUNDRY_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class RssSampler(threading.Thread):
    """The peak resident memory of a process, sampled every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self.running = True

    def run(self) -> None:
        while self.running:
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(self.interval)


def bench_settings(state: Path, jwt_secret: str = "bench-" + "k" * 40) -> Settings:
    return Settings(
        _env_file=None,
        environment="test",
        state_dir=state,
        redis_url=SecretStr(REDIS_URL),
        redis_key_prefix=f"bench-{uuid.uuid4().hex[:6]}:",
        jwt_secret=SecretStr(jwt_secret),
    )


@contextmanager
def backends(state: Path, settings: Settings) -> Iterator[tuple[Settings, BackendUrls]]:
    """An embedded PostgreSQL in ``state``, migrated to head, and the bench Redis."""
    postgres = EmbeddedPostgres(state, "bench")
    postgres.start()
    try:
        asyncio.run(postgres.ensure_database())
        urls = BackendUrls(postgres.sqlalchemy_url(), REDIS_URL)
        upgrade_to_head(urls.database_url, settings.database_app_role)
        yield settings.model_copy(update={"database_url": SecretStr(urls.database_url)}), urls
    finally:
        postgres.stop()


def foundry_env(settings: Settings, urls: BackendUrls, extra: dict[str, str]) -> dict[str, str]:
    """This process's environment without FOUNDRY_*, pointed at the bench backends."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOUNDRY_")}
    env.update(
        {
            "FOUNDRY_DATABASE_URL": urls.database_url,
            "FOUNDRY_REDIS_URL": urls.redis_url,
            "FOUNDRY_STATE_DIR": str(settings.state_dir),
            "FOUNDRY_REDIS_KEY_PREFIX": settings.redis_key_prefix,
            # Benchmarks measure one runtime throughout: FOUNDRY_EMBEDDING_RUNTIME=torch
            # in the bench's environment reaches its worker and API too.
            "FOUNDRY_EMBEDDING_RUNTIME": settings.embedding_runtime,
            **extra,
        }
    )
    return env


def start_foundry(
    command: list[str], env: dict[str, str], log_file: Path
) -> subprocess.Popen[bytes]:
    """``foundry <command>`` as a subprocess (``python -m infrastructure.cli``)."""
    output = log_file.open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "infrastructure.cli", *command],
        env=env,
        stdout=output,
        stderr=output,
        cwd=ROOT,
    )


def start_worker(
    settings: Settings, urls: BackendUrls, metrics_port: int
) -> subprocess.Popen[bytes]:
    """A real `foundry worker` process on the bench backends (its log in the state dir)."""
    extra = {"FOUNDRY_WORKER_METRICS_PORT": str(metrics_port), "FOUNDRY_LOG_LEVEL": "WARNING"}
    env = foundry_env(settings, urls, extra)
    return start_foundry(["worker"], env, settings.state_dir / "worker.log")


def free_port() -> int:
    """A port nobody listens on now (parallel bench runs must not share metrics ports)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stop(process: subprocess.Popen[bytes], grace: float = 90) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``grace`` seconds (a busy box)."""
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def wait_for_worker(port: int, worker: subprocess.Popen[bytes] | None = None) -> None:
    """Until the worker's metrics answer (its model loaded); up to 10 minutes on a busy box."""
    for _ in range(3000):
        if worker is not None and worker.poll() is not None:
            raise RuntimeError("the worker exited; see worker.log in the state directory")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1)
            return
        except OSError:
            await asyncio.sleep(0.2)
    raise RuntimeError("worker did not start")


def incoming(name: str, data: bytes) -> IncomingFile:
    stream = io.BytesIO(data)

    async def read(size: int) -> bytes:
        return stream.read(size)

    return IncomingFile(filename=name, content_type=None, read=read)


async def admin(container: Container) -> Principal:
    """A new organisation's admin, signed up through the account service."""
    session = await container.services.accounts.sign_up(
        f"bench-{uuid.uuid4().hex[:6]}@example.com", "bench password 123", None, RequestOrigin()
    )
    return Principal(session.user.id, session.organization.id, Role.ADMIN, uuid.uuid4())


async def upload_all(
    container: Container, principal: Principal, documents: Sequence[tuple[str, str]]
) -> list[uuid.UUID]:
    """Upload (name, text) documents in batches as the API does; their ids, in order."""
    ids: list[uuid.UUID] = []
    step = container.settings.upload_max_files
    for offset in range(0, len(documents), step):
        batch = documents[offset : offset + step]
        uploads = await container.services.documents.upload(
            principal, [incoming(name, body.encode()) for name, body in batch], ip=None
        )
        ids += [u.document.id for u in uploads if u.document]
    return ids


async def wait_ready(container: Container, principal: Principal, ids: list[uuid.UUID]) -> None:
    """Follow documentEvents (what clients do) instead of polling the database, so the
    benchmark takes no CPU from the worker it measures."""
    pending = set(ids)
    events = container.services.documents.watch(principal)
    waiter = asyncio.ensure_future(anext(events))
    try:
        while pending:
            # Re-check from the database now and then, in case an event came before we listened.
            done, _ = await asyncio.wait({waiter}, timeout=2)
            if waiter in done:
                event = waiter.result()
                waiter = asyncio.ensure_future(anext(events))
                documents = [event.document]
            else:
                documents = [
                    d
                    for i in pending
                    if (d := await container.services.documents.get(principal, i))
                ]
            for document in documents:
                if document.id in pending and document.status.value in ("ready", "failed"):
                    if document.status.value == "failed":
                        raise RuntimeError(f"{document.filename} failed: {document.error_code}")
                    pending.discard(document.id)
    finally:
        waiter.cancel()
        # The generator must be idle before it can be closed.
        await asyncio.gather(waiter, return_exceptions=True)
        await events.aclose()  # type: ignore[attr-defined]


def report(rows: Sequence[tuple[str, object]], payload: dict[str, object]) -> None:
    """A two-column table, then the figures as one JSON line (the last line printed)."""
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label.ljust(width)}  {value}")
    print(json.dumps(payload), flush=True)
