"""What a Gemini failure means, shared by the gemini embedder and answerer.

Transient (retry with backoff): HTTP 408, 429 and 5xx, and transport faults.
Anything else Gemini refuses is a rejection: retrying cannot help, and the
message names the settings to check.
"""

from __future__ import annotations

import httpx2
from google.genai import errors as genai_errors

TRANSIENT_STATUSES = frozenset({408, 429})
# httpx2 is the SDK's default transport (and a hard dependency of google-genai);
# TimeoutError is our own per-attempt deadline, ConnectionError a socket fault.
TRANSPORT_ERRORS: tuple[type[Exception], ...] = (
    httpx2.TimeoutException,
    httpx2.NetworkError,
    httpx2.RemoteProtocolError,
    TimeoutError,
    ConnectionError,
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
