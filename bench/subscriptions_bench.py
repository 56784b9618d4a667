"""Idle subscriptions: how many graphql-transport-ws connections, each with one idle
`documentEvents` subscription, one API process (`foundry serve`) holds, and its resident
memory per connection.

The client raises its own open-files limit to the hard limit first (the API process
inherits it), so the client is not what runs out. The per-user concurrency budgets
(`ws_connections_user`, 20, and `subscriptions_user`, 100) are raised for the run, since
every connection belongs to the same bench user; everything else keeps its defaults.

    .venv/bin/python bench/subscriptions_bench.py              # full run (2,500 connections)
    .venv/bin/python bench/subscriptions_bench.py --size tiny  # smoke run

Prints a table and a JSON line. Needs Redis at FOUNDRY_BENCH_REDIS_URL (default the local
server) and starts its own embedded PostgreSQL in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
from common import backends, bench_settings, foundry_env, log, report, start_foundry, stop
from query_bench import JWT_SECRET, free_port, sign_up, wait_ready
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from infrastructure.container import BackendUrls
from infrastructure.settings import Settings

SIZES = {"tiny": 40, "full": 2_500}
TARGET_CONNECTIONS = 2_000
TARGET_KB_PER_CONNECTION = 50
BATCH = 25  # connections opened concurrently
MAX_REFUSED = 100  # give up after this many refused connections
WARM_UP = 20  # connections open before the baseline memory reading
SUBSCRIBE = "subscription { documentEvents { progress document { id status } } }"


@dataclass
class Results:
    size: str
    cores: int = field(default_factory=lambda: os.cpu_count() or 1)
    attempted: int = 0
    opened: int = 0
    held: int = 0  # still answering a protocol ping after the idle period
    server_subscribers: int = 0  # foundry_document_event_subscribers
    open_seconds: float = 0.0
    open_files_limit: int = 0
    api_rss_before_mb: float = 0.0
    api_rss_after_mb: float = 0.0
    kb_per_connection: float = 0.0
    refused: int = 0
    first_error: str = ""


async def open_idle(url: str, token: str) -> ClientConnection:
    """One connection, acknowledged, with one documentEvents subscription."""
    ws = await connect(
        url,
        subprotocols=[Subprotocol("graphql-transport-ws")],
        ping_interval=None,  # idle: no keepalive traffic from the client
        open_timeout=60,
    )
    init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
    await ws.send(json.dumps(init))
    reply = json.loads(await asyncio.wait_for(ws.recv(), timeout=60))
    if reply["type"] != "connection_ack":
        raise RuntimeError(f"connection refused: {reply}")
    await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": SUBSCRIBE}}))
    return ws


async def alive(ws: ClientConnection) -> bool:
    """The protocol's ping answered with pong (an error or completion means refused)."""
    try:
        await ws.send(json.dumps({"type": "ping"}))
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), timeout=60))
            if message["type"] == "pong":
                return True
            if message["type"] in ("error", "complete"):
                return False
    except Exception as exc:  # websockets' ConnectionClosed, a timeout
        log(f"  not alive: {exc!r}")
        return False


def rss_mb(pid: int) -> float:
    return round(float(psutil.Process(pid).memory_info().rss) / 2**20, 1)


async def subscribers(http: httpx.AsyncClient) -> int:
    for line in (await http.get("/metrics")).text.splitlines():
        if line.startswith("foundry_document_event_subscribers "):
            return int(float(line.split()[1]))
    return 0


async def hold(settings: Settings, urls: BackendUrls, results: Results, count: int) -> None:
    port = free_port()
    budgets = {"ws_connections_user": str(count * 2), "subscriptions_user": str(count * 2)}
    env = foundry_env(
        settings,
        urls,
        {
            "FOUNDRY_ENVIRONMENT": "development",
            "FOUNDRY_JWT_SECRET": JWT_SECRET,
            "FOUNDRY_RATE_LIMITS": json.dumps(budgets),
            "FOUNDRY_LOG_LEVEL": "WARNING",
        },
    )
    api = start_foundry(["serve", "--port", str(port)], env, settings.state_dir / "api.log")
    http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60)
    sockets: list[ClientConnection] = []
    try:
        await wait_ready(http, api)
        token = (await sign_up(http, "subscriptions")).access_token
        url = f"ws://127.0.0.1:{port}/graphql"
        started = time.perf_counter()
        while len(sockets) < count and results.refused < MAX_REFUSED:
            if len(sockets) == WARM_UP:
                await asyncio.sleep(2)
                results.api_rss_before_mb = rss_mb(api.pid)
            step = WARM_UP - len(sockets) if len(sockets) < WARM_UP else BATCH
            batch = min(step, count - len(sockets))
            opened = await asyncio.gather(
                *(open_idle(url, token) for _ in range(batch)), return_exceptions=True
            )
            for item in opened:
                if isinstance(item, BaseException):
                    results.refused += 1
                    results.first_error = results.first_error or repr(item)[:300]
                else:
                    sockets.append(item)
            if len(sockets) % 500 < BATCH:
                rss = rss_mb(api.pid)
                log(f"  {len(sockets)} open, {results.refused} refused, API RSS {rss} MB")
        results.open_seconds = round(time.perf_counter() - started, 1)
        results.opened = len(sockets)
        results.attempted = results.opened + results.refused
        await asyncio.sleep(5)  # idle
        results.server_subscribers = await subscribers(http)
        results.api_rss_after_mb = rss_mb(api.pid)
        checks = await asyncio.gather(*(alive(ws) for ws in sockets))
        results.held = sum(checks)
        extra = results.opened - WARM_UP
        if extra > 0 and results.api_rss_before_mb:
            grown = results.api_rss_after_mb - results.api_rss_before_mb
            results.kb_per_connection = round(grown * 1024 / extra, 1)
    finally:
        if results.refused:  # why the API refused: the end of its log
            api_log = (settings.state_dir / "api.log").read_text(errors="replace")
            log("API log (end):\n" + "\n".join(api_log.splitlines()[-40:]))
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
        await http.aclose()
        stop(api)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    args = parser.parse_args()
    count = SIZES[args.size]
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    results = Results(size=args.size, open_files_limit=hard)
    scratch = tempfile.TemporaryDirectory(prefix="foundry-subscriptions-bench-")
    with scratch as state, backends(Path(state), bench_settings(Path(state))) as (settings, urls):
        asyncio.run(hold(settings, urls, results, count))
    rows: list[tuple[str, object]] = [
        ("cores", results.cores),
        ("open-files limit (client and API)", results.open_files_limit),
        ("connections attempted / opened", f"{results.attempted} / {results.opened}"),
        (
            f"held after idling, answering ping (target >= {TARGET_CONNECTIONS})",
            results.held,
        ),
        ("server's documentEvents subscribers", results.server_subscribers),
        ("time to open them, s", results.open_seconds),
        (
            f"API RSS with {WARM_UP} / all connections, MB",
            f"{results.api_rss_before_mb} / {results.api_rss_after_mb}",
        ),
        (
            f"API memory per connection, KB (target <= {TARGET_KB_PER_CONNECTION})",
            results.kb_per_connection,
        ),
        ("refused connections (first error)", f"{results.refused} ({results.first_error or '-'})"),
    ]
    report(rows, {**results.__dict__, "target_connections": TARGET_CONNECTIONS})


if __name__ == "__main__":
    main()
