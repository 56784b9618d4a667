"""Which failures the queue retries (dependencies that are down, never bad files), how
often, and how long it waits between tries."""

from __future__ import annotations

from domain.errors import ServiceUnavailable, TransientFailure

# Dramatiq waits MIN_BACKOFF_MS * 2**retries, jittered up to twice that, then 50-100%
# of MAX_BACKOFF_MS once that is passed: 15-30 s, 30-60 s, 1-2 min, 2-4 min, 2-4 min...
# An outage of the embedder or the database must last minutes, not seconds, before a
# document fails for it (after its last attempt, ingest_max_attempts).
MIN_BACKOFF_MS = 15_000
# Under the watchdog's pending timeout (5 minutes by default): a document waiting for
# its retry is pending, and the watchdog would queue it again before a longer wait ended.
MAX_BACKOFF_MS = 240_000


def retry_transient(retries: int, exc: BaseException, max_attempts: int) -> bool:
    """Retry while a dependency is failing, as often as a document has attempts
    (``ingest_max_attempts``): the ingestion service fails the document itself on its
    last attempt, so the queue gives up no sooner; the one retry to spare is for a
    failure before the document was claimed (the database down), which uses no attempt.
    """
    return retries < max_attempts and isinstance(exc, TransientFailure | ServiceUnavailable)
