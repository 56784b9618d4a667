"""Per-operation metrics and the operation's fields in the logs.

An operation sent over HTTP is the request: its fields (name, type, outcome, user,
organisation) join the request's own line (``http.request``, written by the
middleware), one line per request instead of two (each line costs 60-86 µs of the
event loop's time on a slow core, bench/README.md). Operations over a WebSocket, many
per connection, each get a ``graphql.operation`` line of their own.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import structlog
from strawberry.extensions import SchemaExtension

from infrastructure.observability.metrics import (
    GRAPHQL_DURATION,
    GRAPHQL_OPERATIONS,
    operation_label,
)
from schema.errors import first_error_code

log = structlog.get_logger("foundry.graphql")


class OperationMetrics(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        yield
        elapsed = time.perf_counter() - started
        ctx = self.execution_context
        name = operation_label(ctx.operation_name)
        try:
            kind = ctx.operation_type.value
        except Exception:  # the document did not parse
            kind = "unknown"
        outcome = first_error_code(getattr(ctx.result, "errors", None))
        GRAPHQL_OPERATIONS.labels(name, kind, outcome).inc()
        GRAPHQL_DURATION.labels(name, kind, outcome).observe(elapsed)
        principal = getattr(ctx.context, "principal", None)
        fields = {
            "operation": name,
            "type": kind,
            "outcome": outcome,
            "user_id": str(principal.user_id) if principal else None,
            "organization_id": str(principal.organization_id) if principal else None,
        }
        if getattr(ctx.context, "over_websocket", True):
            structlog.contextvars.bind_contextvars(operation=name)
            log.info("graphql.operation", duration_ms=round(elapsed * 1000, 2), **fields)
        else:  # the request's line carries them (the middleware's, in this context)
            structlog.contextvars.bind_contextvars(**fields)
