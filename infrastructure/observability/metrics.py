"""Prometheus metrics; label values a client can influence are bounded."""

from __future__ import annotations

import re
import threading

from prometheus_client import Counter, Histogram

GRAPHQL_OPERATIONS = Counter(
    "foundry_graphql_operations_total",
    "GraphQL operations by operation name, type and outcome (ok or an error code).",
    ["operation", "type", "outcome"],
)
GRAPHQL_DURATION = Histogram(
    "foundry_graphql_operation_duration_seconds",
    "GraphQL operation latency in seconds.",
    ["operation", "type", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
HTTP_REQUESTS = Counter(
    "foundry_http_requests_total",
    "HTTP requests by route and status.",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "foundry_http_request_duration_seconds", "HTTP request latency in seconds.", ["route"]
)
AUTH_EVENTS = Counter("foundry_auth_events_total", "Authentication events.", ["event"])

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


class BoundedLabel:
    """Keeps at most ``limit`` distinct client-chosen values; the rest become 'other'."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str | None) -> str:
        if not value:
            return "anonymous"
        if not _NAME.match(value):
            return "invalid"
        with self._lock:
            if value in self._seen:
                return value
            if len(self._seen) >= self._limit:
                return "other"
            self._seen.add(value)
            return value


operation_label = BoundedLabel(limit=300)
