from __future__ import annotations

from domain.errors import (
    EmptyDocument,
    EncryptedPdf,
    ParseFailed,
    ServiceUnavailable,
    TransientFailure,
)
from workers.retry_policy import MAX_RETRIES, retry_transient


def test_dependencies_down_are_retried_until_the_limit() -> None:
    assert retry_transient(0, TransientFailure("embedding provider returned 503"))
    assert retry_transient(MAX_RETRIES - 1, ServiceUnavailable())
    assert not retry_transient(MAX_RETRIES, TransientFailure("still down"))


def test_bad_files_and_bugs_are_never_retried() -> None:
    for error in (ParseFailed(), EncryptedPdf(), EmptyDocument(), ValueError("bug")):
        assert not retry_transient(0, error)
