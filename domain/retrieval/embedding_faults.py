"""Embedding faults as someone waiting for a search or an answer meets them."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from domain.errors import EmbeddingRejected, EmbeddingUnavailable, TransientFailure

log = logging.getLogger("foundry.search")


@contextmanager
def embedding_for_a_caller(what: str) -> Iterator[None]:
    """A provider down (after its retries) or refusing for good (a bad key or model) is
    EMBEDDING_UNAVAILABLE to the caller. A refusal is the operator's to fix: its details
    (the provider's reply, the setting to check) go to the log, not to the caller."""
    try:
        yield
    except TransientFailure as failure:
        raise EmbeddingUnavailable() from failure
    except EmbeddingRejected as rejection:
        log.error("%s.embedding_rejected error=%s", what, rejection.message)
        raise EmbeddingUnavailable() from rejection
