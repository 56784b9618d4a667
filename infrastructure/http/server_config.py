"""The uvicorn settings the API runs with (`foundry serve` / `foundry up`)."""

from __future__ import annotations

import uvicorn
from starlette.types import ASGIApp

from infrastructure.http.lean_websockets import LeanWebSocketsProtocol
from infrastructure.settings import Settings, trusted_proxy_entries

WS_MAX_MESSAGE_BYTES = 1_048_576


def trusted_proxies(settings: Settings) -> str | None:
    """uvicorn's forwarded_allow_ips, or None to ignore X-Forwarded-* headers entirely.

    Normalised here too, not only when the settings are read: settings built with
    ``model_copy(update=...)`` skip validation, and uvicorn takes what it is given
    without a word (``*`` believes the client; a network with host bits trusts nobody).
    """
    return ",".join(trusted_proxy_entries(settings.forwarded_allow_ips)) or None


def uvicorn_config(app: ASGIApp, settings: Settings) -> uvicorn.Config:
    trusted = trusted_proxies(settings)
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        # The app cannot serve without its lifespan (pools, listeners): never "auto".
        lifespan="on",
        proxy_headers=trusted is not None,
        forwarded_allow_ips=trusted,
        timeout_graceful_shutdown=settings.shutdown_grace_seconds,
        ws=LeanWebSocketsProtocol,
        ws_max_size=WS_MAX_MESSAGE_BYTES,
        ws_per_message_deflate=settings.ws_per_message_deflate,
    )
