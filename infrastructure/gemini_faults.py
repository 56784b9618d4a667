"""What a Gemini failure means, and the HTTP client it arrives through, shared by
the gemini embedder and answerer.

Transient (retry with backoff): HTTP 408, 429 and 5xx, transport faults (all but a
request the client itself cannot send), a body that does not decode, and a
response that is not JSON (a body cut inside the JSON, a proxy's error page): the
SDK raises UnknownApiResponseError for a streamed event and a bare
json.JSONDecodeError for a whole body, which it parses itself.
Anything else Gemini refuses is a rejection: retrying cannot help, and the
message names the settings to check.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence

import httpx2
from google.genai import errors as genai_errors

TRANSIENT_STATUSES = frozenset({408, 429})
# httpx2 is the SDK's transport (pinned by httpx_client below). Every transport fault
# but two is transient: timeouts, network and proxy faults, the server breaking the
# protocol, a malformed event stream; and a body whose content encoding does not decode
# (a cut or mangled compressed body). Not LocalProtocolError or UnsupportedProtocol: the
# request itself (or FOUNDRY_GEMINI_BASE_URL) is wrong, and stays wrong. A tuple, as
# ``except`` needs, so the transport base is listed by its transient subclasses
# (tests/unit/test_gemini_faults.py checks none is missing). TimeoutError is our own
# per-attempt deadline, ConnectionError a socket fault; the last two, a body that is not
# JSON (cut inside a streamed event, or a whole body the SDK parses itself).
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    httpx2.TimeoutException,
    httpx2.NetworkError,
    httpx2.RemoteProtocolError,
    httpx2.ProxyError,
    httpx2.SSEError,
    httpx2.DecodingError,
    TimeoutError,
    ConnectionError,
    genai_errors.UnknownApiResponseError,
    json.JSONDecodeError,
)

ResponseHook = Callable[[httpx2.Response], Awaitable[None]]


def httpx_client(response_hooks: Sequence[ResponseHook] = ()) -> httpx2.AsyncClient:
    """The HTTP client to hand the SDK (``HttpOptions.httpx_async_client``).

    Given none, the SDK sends through aiohttp whenever aiohttp is installed (any
    other package may pull it in): its faults are not in TRANSIENT_ERRORS and
    httpx event hooks never fire. A client of our own pins httpx2 and keeps the
    SDK's defaults (no client timeout, as the SDK sets one per request; redirects
    followed; proxies and CA bundle from the environment). Unlike the SDK's own, it
    keeps one pool for the event loop that first uses it, which is how the API and
    the worker use an adapter. The SDK never closes a client it was given: the
    adapter's ``aclose`` does.
    """
    return httpx2.AsyncClient(
        timeout=None, follow_redirects=True, event_hooks={"response": list(response_hooks)}
    )


def is_transient_status(error: genai_errors.APIError) -> bool:
    return error.code in TRANSIENT_STATUSES or error.code >= 500


def rejection_message(
    error: genai_errors.APIError, model: str, model_setting: str, request_settings: str
) -> str:
    """Why Gemini refused, and which settings to check (``FOUNDRY_...`` names)."""
    detail = f"HTTP {error.code} {error.status}: {(error.message or '')[:200]}"
    if error.code in (401, 403) or "api key" in (error.message or "").lower():
        return f"Gemini rejected the API key ({detail}); check FOUNDRY_GEMINI_API_KEY."
    if error.code == 404:
        return (
            f"Gemini does not serve model {model!r} ({detail}); check "
            f"{model_setting} and FOUNDRY_GEMINI_BASE_URL."
        )
    return f"Gemini rejected the request ({detail}); check {request_settings}."
