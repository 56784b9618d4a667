"""Which transport faults of the SDK's HTTP client (httpx2) count as transient."""

from __future__ import annotations

from collections.abc import Iterator

import httpx2
import pytest

from domain.errors import TransientFailure
from infrastructure.embeddings import gemini
from infrastructure.embeddings.gemini import GeminiEmbedder
from infrastructure.gemini_faults import TRANSIENT_ERRORS

# The request itself cannot be sent as written: retrying sends it the same way.
PERMANENT = {httpx2.LocalProtocolError, httpx2.UnsupportedProtocol}
# Only ever raised as one of its subclasses, local (permanent) or remote (transient).
ABSTRACT = {httpx2.ProtocolError}


def subclasses(base: type[Exception]) -> Iterator[type[Exception]]:
    for subclass in base.__subclasses__():
        yield subclass
        yield from subclasses(subclass)


def test_every_transport_fault_but_a_bad_request_is_transient() -> None:
    """Listed by their subclasses (``except`` takes no exclusions): an upgrade of httpx2
    that adds a transport fault fails here until the list says what it is."""
    for fault in subclasses(httpx2.TransportError):
        if fault in ABSTRACT:
            continue
        if any(issubclass(fault, permanent) for permanent in PERMANENT):
            assert not issubclass(fault, TRANSIENT_ERRORS), fault
        else:
            assert issubclass(fault, TRANSIENT_ERRORS), fault


@pytest.mark.parametrize("fault", [httpx2.ProxyError, httpx2.DecodingError, httpx2.ReadError])
async def test_a_proxy_or_decoding_fault_is_retried_then_transient(
    monkeypatch: pytest.MonkeyPatch, fault: type[httpx2.HTTPError]
) -> None:
    attempts: list[str] = []

    def fail(request: httpx2.Request) -> httpx2.Response:
        attempts.append(request.url.path)
        raise fault("scripted transport fault")

    monkeypatch.setattr(
        gemini, "httpx_client", lambda: httpx2.AsyncClient(transport=httpx2.MockTransport(fail))
    )
    embedder = GeminiEmbedder(
        "test-key", base_url="http://gemini.invalid", max_attempts=2, backoff_initial_seconds=0
    )
    try:
        with pytest.raises(TransientFailure, match="after 2 attempts"):
            await embedder.embed_documents(["text"])
    finally:
        await embedder.aclose()
    assert len(attempts) == 2


async def test_an_unsupported_url_is_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.UnsupportedProtocol("scripted: no such scheme")

    monkeypatch.setattr(
        gemini, "httpx_client", lambda: httpx2.AsyncClient(transport=httpx2.MockTransport(fail))
    )
    embedder = GeminiEmbedder("test-key", base_url="http://gemini.invalid", max_attempts=2)
    try:
        with pytest.raises(httpx2.UnsupportedProtocol):
            await embedder.embed_documents(["text"])
    finally:
        await embedder.aclose()
