"""The Starlette application: /graphql (HTTP + WebSocket), document downloads, health,
readiness and metrics."""

from __future__ import annotations

import asyncio
import gc
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.types import Receive, Scope, Send

from infrastructure import security_gate
from infrastructure.container import BackendUrls, Container
from infrastructure.http.document_files import DocumentFiles
from infrastructure.http.draining import AnswerDrain, DrainingHTTP, DrainingWebSockets
from infrastructure.http.graphiql import STATIC_PREFIX, build_graphiql_page
from infrastructure.http.graphql_view import FoundryGraphQL
from infrastructure.http.health import healthz, metrics, readyz
from infrastructure.http.middleware import GraphQLGuardMiddleware, RequestContextMiddleware
from infrastructure.http.operation_metrics import OperationMetrics
from infrastructure.http.web_app import WebApp
from infrastructure.settings import Settings
from schema.build import SchemaLimits, build_schema
from schema.types.document import DOWNLOAD_PATH

log = structlog.get_logger("foundry.app")


class _LazyGraphQL:
    """Routes to the GraphQL view built in the lifespan (engines are never built at import)."""

    def __init__(self) -> None:
        self.view: FoundryGraphQL | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.view is None:
            response = PlainTextResponse("Starting up", status_code=503)
            await response(scope, receive, send)
            return
        await self.view(scope, receive, send)


def freeze_heap() -> None:
    """Exempt everything loaded so far (model, libraries, schema) from garbage collection.

    The API holds over half a million long-lived objects once the model is loaded, and
    each full collection walked them all: a pause of a few hundred milliseconds, in the
    middle of whatever requests were running. Frozen objects are never scanned again;
    what requests allocate is collected as before.
    """
    gc.collect()
    gc.freeze()
    log.info("app.heap_frozen", objects=gc.get_freeze_count())


# The model runs on its own thread and gives up the GIL inside each torch operation,
# but must win it back between operations; with Python's default 5 ms switch interval
# it waits behind the event loop, which serves requests meanwhile. 0.5 ms lets the two
# alternate (8 concurrent searches: p95 about 10 % lower, measured in bench/README.md).
GIL_SWITCH_INTERVAL_SECONDS = 0.0005


def _report_warm_up(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("app.warm_up_failed", error=repr(task.exception()))
    else:
        log.info("app.models_loaded")
    freeze_heap()


def create_app(settings: Settings, urls: BackendUrls) -> Starlette:
    security_gate.enforce(settings)
    graphql = _LazyGraphQL()
    graphiql = build_graphiql_page()
    web_app = WebApp()
    limits = SchemaLimits(
        max_depth=settings.graphql_max_depth,
        max_aliases=settings.graphql_max_aliases,
        max_tokens=settings.graphql_max_tokens,
        max_chars=settings.graphql_max_query_chars,
        introspection=settings.introspection_enabled,
    )
    # One parse cache: the WebSocket drain reads each subscribe frame's text too.
    documents = limits.document_cache()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_SECONDS)
        container = Container(
            settings.model_copy(update={"torch_threads": settings.api_torch_threads}), urls
        )
        schema = build_schema(limits, outer_extensions=[OperationMetrics], documents=documents)
        app.state.container = container
        # Session notices reach every stream (an answer, document events) from the start.
        container.listener.start()
        graphql.view = FoundryGraphQL(schema, container, graphiql)
        # Load the embedding models (questions' and passages') in the background: requests
        # are served meanwhile, and the first search waits for them instead of loading them.
        if settings.preload_models:
            warm_up = asyncio.create_task(asyncio.to_thread(container.embedder.warm_up, True))
            warm_up.add_done_callback(_report_warm_up)
            app.state.warm_up = warm_up  # a reference, so the task is not collected
        else:
            freeze_heap()
        log.info("app.started", environment=settings.environment)
        try:
            yield
        finally:
            graphql.view = None
            await container.aclose()
            log.info("app.stopped")

    middleware = [Middleware(RequestContextMiddleware)]
    if settings.cors_allow_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=settings.cors_allow_origins,
                allow_methods=["GET", "POST", "OPTIONS"],
                allow_headers=[
                    "authorization",
                    "content-type",
                    "x-requested-with",
                    "apollo-require-preflight",
                    "x-request-id",
                    # Apollo Client sends these on every request (client awareness).
                    "apollographql-client-name",
                    "apollographql-client-version",
                ],
                # A cross-origin client reads a download's filename from it.
                expose_headers=["content-disposition"],
                allow_credentials=False,
                max_age=600,
            )
        )
    middleware.append(
        Middleware(
            GraphQLGuardMiddleware,
            max_body_bytes=settings.graphql_max_body_bytes,
            max_upload_bytes=settings.upload_max_request_bytes,
        )
    )
    # In-flight answers and GraphQL requests, which a graceful shutdown lets finish (see
    # draining.py).
    drain = AnswerDrain()
    app = Starlette(
        debug=settings.debug,
        routes=[
            Route("/graphql", DrainingHTTP(graphql, drain), methods=["GET", "POST"]),
            WebSocketRoute("/graphql", DrainingWebSockets(graphql, drain, limits, documents)),
            Route(STATIC_PREFIX + "{path:path}", graphiql.serve_asset, methods=["GET"]),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
            Route(DOWNLOAD_PATH, DocumentFiles(), methods=["GET"]),
            # Last: the web client and its SPA fallback never shadow the routes above.
            Route("/{path:path}", web_app.serve, methods=["GET", "HEAD"]),
        ],
        middleware=middleware,
        lifespan=lifespan,
    )
    app.state.answer_drain = drain
    return app
