"""`foundry up` as a user runs it: a real process on the embedded defaults."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest

from infrastructure.embedded import postmaster_pid, redis_server_pid
from tests.conftest import free_port
from tests.helpers import LOG_IN, ME, PASSWORD, SIGN_UP, unique_email

FOUNDRY = [sys.executable, "-m", "infrastructure.cli"]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOUNDRY_")}
    env.update({"FOUNDRY_ARGON2_TIME_COST": "1", "FOUNDRY_ARGON2_MEMORY_COST_KIB": "1024"})
    env.update(extra)
    return env


def run_foundry(
    command: str,
    state_dir: Path | None,
    timeout: float = 60,
    *,
    args: Sequence[str] = (),
    **env: str,
) -> subprocess.CompletedProcess[str]:
    """A short-lived `foundry` command (``command`` may be two words, as "schema export";
    settings from ``env`` only), its output kept."""
    state = [] if state_dir is None else ["--state-dir", str(state_dir)]
    return subprocess.run(
        [*FOUNDRY, *command.split(), *args, *state],
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class FoundryProcess:
    def __init__(self, state_dir: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log = state_dir.parent / f"foundry-up-{self.port}.log"
        self.process = subprocess.Popen(
            [*FOUNDRY, "up", "--state-dir", str(state_dir), "--port", str(self.port)],
            env=clean_env(),
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"foundry up exited early:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        pytest.fail(f"foundry up was not ready in {timeout}s:\n{self.log.read_text()}")

    def interrupt(self, timeout: float = 30) -> int:
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


def graphql(
    base_url: str, query: str, variables: dict[str, object], token: str | None = None
) -> dict[str, object]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    response = httpx.post(
        f"{base_url}/graphql",
        json={"query": query, "variables": variables},
        headers=headers,
        timeout=30,
    )
    body: dict[str, object] = response.json()
    assert "errors" not in body, body
    return body["data"]  # type: ignore[return-value]


def test_up_serves_signup_and_me_stops_cleanly_and_keeps_data(state_dir: Path) -> None:
    email = unique_email("e2e")
    first = FoundryProcess(state_dir)
    try:
        first.wait_ready()
        page = httpx.get(f"{first.base_url}/graphql", headers={"accept": "text/html"}, timeout=10)
        assert page.status_code == 200 and "graphiql" in page.text.lower()
        signed = graphql(first.base_url, SIGN_UP, {"input": {"email": email, "password": PASSWORD}})
        token = signed["signUp"]["accessToken"]  # type: ignore[index]
        me = graphql(first.base_url, ME, {}, token)
        assert me["me"]["email"] == email  # type: ignore[index]
        assert first.interrupt() == 0
    finally:
        first.kill()
    assert "GraphiQL at http://127.0.0.1" in first.log.read_text()
    # Ctrl-C stopped the embedded PostgreSQL too.
    assert not (state_dir / "postgres" / "postmaster.pid").exists()

    second = FoundryProcess(state_dir)
    try:
        second.wait_ready()
        logged = graphql(second.base_url, LOG_IN, {"input": {"email": email, "password": PASSWORD}})
        assert logged["logIn"]["user"]["id"] == signed["signUp"]["user"]["id"]  # type: ignore[index]
        assert second.interrupt() == 0
    finally:
        second.kill()


def test_migrate_applies_migrations_on_the_embedded_database(tmp_path: Path) -> None:
    result = run_foundry("migrate", tmp_path / "state", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Migrations applied." in result.stdout
    assert "0001_initial" in result.stderr  # alembic's log line
    assert not (tmp_path / "state" / "postgres" / "postmaster.pid").exists()


def test_production_refuses_unsafe_settings_naming_each(tmp_path: Path) -> None:
    result = run_foundry(
        "serve",
        tmp_path,
        FOUNDRY_ENVIRONMENT="production",
        FOUNDRY_DEBUG="true",
        FOUNDRY_CORS_ALLOW_ORIGINS="*",
    )
    assert result.returncode == 2
    for setting in (
        "FOUNDRY_JWT_SECRET",
        "FOUNDRY_DEBUG",
        "FOUNDRY_CORS_ALLOW_ORIGINS",
        "FOUNDRY_DATABASE_URL",
        "FOUNDRY_REDIS_URL",
    ):
        assert setting in result.stderr


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc: Linux, as the supported platforms)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _worker_of(process: subprocess.Popen[bytes]) -> int:
    for child in _children(process.pid):
        cmdline = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        if b"worker" in cmdline:
            return child
    pytest.fail("foundry up has no worker child")


def test_up_stops_when_its_worker_dies(state_dir: Path) -> None:
    """Uploads would wait forever with no worker: the whole thing stops, non-zero."""
    up = FoundryProcess(state_dir)
    try:
        up.wait_ready()
        os.kill(_worker_of(up.process), signal.SIGKILL)  # as the OOM killer would
        assert up.process.wait(timeout=60) == 1
    finally:
        up.kill()
    assert "The ingestion worker exited unexpectedly (exit code -9)" in up.log.read_text()
    assert not (state_dir / "postgres" / "postmaster.pid").exists()


def test_a_closed_terminal_stops_everything_cleanly(state_dir: Path) -> None:
    up = FoundryProcess(state_dir)
    try:
        up.wait_ready()
        worker = _worker_of(up.process)
        up.process.send_signal(signal.SIGHUP)
        assert up.process.wait(timeout=60) == 0
    finally:
        up.kill()
    assert not Path(f"/proc/{worker}").exists()
    assert not (state_dir / "postgres" / "postmaster.pid").exists()


def test_bad_settings_are_named_without_echoing_their_values(tmp_path: Path) -> None:
    """A URL holds a password: the refusal names the setting, never the value."""
    result = run_foundry(
        "migrate",
        tmp_path,
        FOUNDRY_DATABASE_URL="mysql://app:s3cret-pw@db.internal/foundry",
        FOUNDRY_REDIS_URL="http://cache.internal:6379",
        FOUNDRY_PORT="eighty",
    )
    assert result.returncode == 2
    assert "s3cret-pw" not in result.stderr + result.stdout
    assert "FOUNDRY_DATABASE_URL: must start with postgresql://" in result.stderr
    assert "FOUNDRY_REDIS_URL: must start with redis://" in result.stderr
    assert "FOUNDRY_PORT: " in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unreachable_database_or_a_missing_key_is_said_plainly(tmp_path: Path) -> None:
    down = run_foundry(
        "migrate", tmp_path, FOUNDRY_DATABASE_URL=f"postgresql://app:pw@127.0.0.1:{free_port()}/db"
    )
    assert down.returncode == 1
    assert "Cannot reach a backend: ConnectionRefusedError" in down.stderr
    assert "Traceback" not in down.stderr
    no_key = run_foundry("serve", tmp_path, FOUNDRY_ANSWERER="gemini")
    assert no_key.returncode == 2
    assert "FOUNDRY_GEMINI_API_KEY is not set; FOUNDRY_ANSWERER=gemini needs it." in no_key.stderr


def _servers_of(pgdata: Path) -> list[int]:
    """The PostgreSQL processes running on ``pgdata``."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            words = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if words and words[0].endswith(b"postgres") and str(pgdata).encode() in words:
            found.append(int(cmdline.parent.name))
    return found


def _stop_leftovers(state_dir: Path) -> None:
    """What a `foundry up` killed outright leaves running (the test failed): stop it."""
    postmaster = postmaster_pid(state_dir / "postgres")
    if postmaster is not None and Path(f"/proc/{postmaster}").exists():
        os.kill(postmaster, signal.SIGINT)  # PostgreSQL's fast shutdown
    registry = state_dir / "redis" / "dump.rdb.settings"
    if registry.exists():
        pidfile = Path(json.loads(registry.read_text())["pidfile"])
        if pidfile.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pidfile.read_text()), signal.SIGTERM)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_stop_during_start_up_stops_what_was_started(state_dir: Path, signum: int) -> None:
    """A service manager's SIGTERM (or a closed terminal) while PostgreSQL is starting:
    `up` unwinds as Ctrl-C does, leaving no server running."""
    up = FoundryProcess(state_dir)
    pidfile = state_dir / "postgres" / "postmaster.pid"
    server_log = state_dir / "postgres" / "log"  # pg_ctl makes it as it starts the server
    try:
        while not server_log.exists():
            assert up.process.poll() is None, up.log.read_text()
            time.sleep(0.005)
        up.process.send_signal(signum)
        code = up.process.wait(timeout=60)
        left = _servers_of(state_dir / "postgres")
        redis_left = (state_dir / "redis" / "dump.rdb.settings").exists()  # its owner's record
    finally:
        up.kill()
        _stop_leftovers(state_dir)
    assert code == 128 + signal.SIGTERM, up.log.read_text()
    assert left == []
    assert not pidfile.exists()
    assert not redis_left
    assert "Traceback" not in up.log.read_text()


def _exited(pid: int) -> bool:
    """Whether ``pid`` has exited (a zombie has: whoever inherited it has yet to reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


def test_the_worker_and_the_embedded_servers_stop_when_up_is_killed_outright(
    state_dir: Path,
) -> None:
    """SIGKILL (the OOM killer, `kill -9`) runs no cleanup in `up`: its worker must not
    live on, orphaned, taking jobs for an API that is gone, nor its embedded PostgreSQL
    and Redis, holding memory and the state directory until the next run."""
    up = FoundryProcess(state_dir)
    worker = None
    try:
        up.wait_ready()
        worker = _worker_of(up.process)
        postgres = postmaster_pid(state_dir / "postgres")
        redis = redis_server_pid(state_dir)
        assert postgres is not None and redis is not None
        up.kill()
        deadline = time.monotonic() + 90  # the worker's graceful stop, on a busy machine
        while not _exited(worker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _exited(worker), up.log.read_text()
        # Then the keeper stops the servers (once the worker, which uses them, is gone).
        deadline = time.monotonic() + 60
        while not (_exited(postgres) and _exited(redis)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _exited(postgres) and _exited(redis), up.log.read_text()
        assert _servers_of(state_dir / "postgres") == []
    finally:
        up.kill()
        if worker is not None and not _exited(worker):
            os.kill(worker, signal.SIGKILL)
        _stop_leftovers(state_dir)


@pytest.mark.parametrize("command", ["serve", "up"])
def test_a_port_in_use_is_said_in_one_line_before_anything_starts(
    tmp_path: Path, command: str
) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        try:
            result = run_foundry(command, tmp_path / "state", 120, args=["--port", str(port)])
        finally:
            _stop_leftovers(tmp_path / "state")  # should it have started them regardless
    assert result.returncode == 1, result.stderr
    assert (
        result.stderr.strip().splitlines()[-1].startswith(f"127.0.0.1:{port} is already in use: ")
    )
    assert "is up" not in result.stdout
    assert not (tmp_path / "state" / "postgres").exists()  # nothing was started


@pytest.mark.parametrize(
    "command",
    [
        ["migrate"],
        ["reembed"],
        ["storage-check"],
        ["ingest", "README.md", "--email", "nobody@example.com"],
    ],
    ids=lambda command: command[0],
)
def test_a_stop_while_a_command_runs_stops_its_embedded_servers(
    tmp_path: Path, command: list[str]
) -> None:
    """A service manager's SIGTERM to a one-off command (here while PostgreSQL starts)
    unwinds it as Ctrl-C does: no server left running on the state directory."""
    state_dir = tmp_path / "state"
    log = tmp_path / "command.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [*FOUNDRY, *command, "--state-dir", str(state_dir)],
            env=clean_env(),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    server_log = state_dir / "postgres" / "log"
    try:
        while not server_log.exists():
            assert process.poll() is None, log.read_text()
            time.sleep(0.005)
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
        left = _servers_of(state_dir / "postgres")
        redis_left = (state_dir / "redis" / "dump.rdb.settings").exists()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        _stop_leftovers(state_dir)
    assert code == 128 + signal.SIGTERM, log.read_text()
    assert left == []
    assert not redis_left
    assert "Traceback" not in log.read_text()
