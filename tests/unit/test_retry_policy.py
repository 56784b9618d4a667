from __future__ import annotations

from dramatiq.common import compute_backoff

from domain.errors import (
    EmptyDocument,
    EncryptedPdf,
    ParseFailed,
    ServiceUnavailable,
    TransientFailure,
)
from infrastructure.settings import Settings
from workers.retry_policy import MAX_BACKOFF_MS, MIN_BACKOFF_MS, retry_transient


def test_dependencies_down_are_retried_as_often_as_a_document_has_attempts() -> None:
    for max_attempts in (1, 3, 20):
        for retries in range(max_attempts):
            assert retry_transient(retries, TransientFailure("embedder returned 503"), max_attempts)
            assert retry_transient(retries, ServiceUnavailable(), max_attempts)
        assert not retry_transient(max_attempts, TransientFailure("still down"), max_attempts)
    # The largest ingest_max_attempts the settings accept still gets all its retries.
    most = Settings.model_fields["ingest_max_attempts"].metadata
    largest = next(rule.le for rule in most if hasattr(rule, "le"))
    assert retry_transient(largest - 1, TransientFailure("down"), largest)


def test_bad_files_and_bugs_are_never_retried() -> None:
    for error in (ParseFailed(), EncryptedPdf(), EmptyDocument(), ValueError("bug")):
        assert not retry_transient(0, error, 20)


def _waits_ms(retries: int) -> list[tuple[int, int]]:
    """The shortest and longest wait before each retry (Dramatiq's own computation)."""
    waits = []
    for retry in range(retries):
        low = min(MIN_BACKOFF_MS * 2**retry, MAX_BACKOFF_MS)
        high = min(2 * MIN_BACKOFF_MS * 2**retry, MAX_BACKOFF_MS)
        for _ in range(200):  # jittered: every draw within the bounds
            _, delay = compute_backoff(retry, factor=MIN_BACKOFF_MS, max_backoff=MAX_BACKOFF_MS)
            assert min(low, MAX_BACKOFF_MS // 2) <= delay <= high
        waits.append((low, high))
    return waits


def test_a_document_fails_for_an_outage_only_after_minutes() -> None:
    default_attempts = Settings.model_fields["ingest_max_attempts"].default
    # The retries between its attempts: the outage must outlast all their waits.
    waits = _waits_ms(default_attempts - 1)
    assert sum(low for low, _ in waits) >= 45_000
    # With more attempts the waits keep growing, to minutes each.
    assert _waits_ms(6)[-1][0] >= 120_000


def test_no_wait_outlasts_the_watchdogs_pending_timeout() -> None:
    """A document waiting for its retry is pending: a longer wait would have the
    watchdog queue it again first."""
    pending_timeout_ms = Settings.model_fields["ingest_pending_timeout_seconds"].default * 1000
    for retry in range(30):
        _, delay = compute_backoff(retry, factor=MIN_BACKOFF_MS, max_backoff=MAX_BACKOFF_MS)
        assert delay < pending_timeout_ms
