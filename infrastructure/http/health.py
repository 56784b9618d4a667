"""/healthz (alive), /readyz (database, Redis, schema migrated, the query embedder not
failed, not shutting down), /metrics."""

from __future__ import annotations

import asyncio
import contextlib

from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from infrastructure.container import Container
from infrastructure.http.draining import AnswerDrain
from infrastructure.observability.ingestion_metrics import QUEUE_DEPTH

SUBSCRIBERS = Gauge("foundry_document_event_subscribers", "Open documentEvents subscriptions.")


async def healthz(_: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    container: Container = request.app.state.container
    checks = await container.readiness()
    drain = getattr(request.app.state, "answer_drain", None)
    if isinstance(drain, AnswerDrain) and drain.closing:
        checks["server"] = "shutting down"
    # The query embedder loads in the background at start-up (FOUNDRY_PRELOAD_MODELS):
    # until it has, searches and questions wait for it; had it failed, they would fail.
    warm_up = getattr(request.app.state, "warm_up", None)
    if isinstance(warm_up, asyncio.Task):
        checks["models"] = _loaded(warm_up)
    ready = all(result == "ok" for result in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "unavailable", "checks": checks},
        status_code=200 if ready else 503,
    )


def _loaded(warm_up: asyncio.Task[None]) -> str:
    if not warm_up.done():
        return "loading"
    failure = None if warm_up.cancelled() else warm_up.exception()
    return "ok" if failure is None else f"failed to load: {type(failure).__name__}"


async def metrics(request: Request) -> Response:
    container: Container = request.app.state.container
    with contextlib.suppress(Exception):  # metrics must render even when Redis is down
        QUEUE_DEPTH.set(await asyncio.wait_for(container.queue_depth(), timeout=1))
    SUBSCRIBERS.set(container.events.subscriber_count())
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
