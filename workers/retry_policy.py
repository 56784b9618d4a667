"""Which failures the queue retries: dependencies that are down, never bad files."""

from __future__ import annotations

from domain.errors import ServiceUnavailable, TransientFailure

MAX_RETRIES = 5
MIN_BACKOFF_MS = 2_000
MAX_BACKOFF_MS = 120_000


def retry_transient(retries: int, exc: BaseException) -> bool:
    """Retry (Dramatiq applies exponential backoff) only while a dependency is failing."""
    return retries < MAX_RETRIES and isinstance(exc, TransientFailure | ServiceUnavailable)
