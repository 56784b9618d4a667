"""A database nobody migrated yet: the worker refuses to start, in one line, and `serve`
warns at start-up (it serves anyway: /readyz reports the schema until someone migrates)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from infrastructure.container import BackendUrls
from infrastructure.embedded import EmbeddedPostgres
from infrastructure.settings import Settings
from tests.conftest import free_port, worker_env
from tests.helpers import new_database

FOUNDRY = [sys.executable, "-m", "infrastructure.cli"]


def test_the_worker_exits_2_in_one_line_on_an_unmigrated_database(
    settings: Settings, urls: BackendUrls, embedded_postgres: EmbeddedPostgres
) -> None:
    url = asyncio.run(new_database(embedded_postgres, urls, "unmigrated_worker"))
    result = subprocess.run(
        [*FOUNDRY, "worker"],
        env=worker_env(settings, FOUNDRY_DATABASE_URL=url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "Cannot start the worker: the database schema is behind "
        "(not migrated: run foundry migrate)."
    )
    assert "Traceback" not in result.stderr
    assert "Cannot reach a backend" not in result.stderr


def test_serve_warns_at_start_up_when_the_schema_is_behind(
    settings: Settings, urls: BackendUrls, embedded_postgres: EmbeddedPostgres, tmp_path: Path
) -> None:
    url = asyncio.run(new_database(embedded_postgres, urls, "unmigrated_serve"))
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as output:
        serve = subprocess.Popen(
            [*FOUNDRY, "serve", "--port", str(port)],
            env=worker_env(settings, FOUNDRY_DATABASE_URL=url),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        ready = None
        deadline = time.monotonic() + 90
        while ready is None and time.monotonic() < deadline:
            assert serve.poll() is None, log.read_text()
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
            except httpx.HTTPError:
                time.sleep(0.2)
        assert ready is not None, log.read_text()
        assert ready.status_code == 503
        serve.send_signal(signal.SIGINT)
        assert serve.wait(timeout=60) == 0
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()
    text = log.read_text()
    assert '"event": "startup.schema_behind"' in text
    assert '"schema": "not migrated: run foundry migrate"' in text
