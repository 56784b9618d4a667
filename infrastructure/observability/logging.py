"""structlog JSON logs with secrets scrubbed; stdlib (uvicorn) logs go through the same pipeline."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from functools import lru_cache
from typing import cast

import structlog
from structlog.types import EventDict, Processor, WrappedLogger

REDACTED = "[REDACTED]"
_SECRET_KEYS = frozenset(
    {"authorization", "cookie", "set-cookie", "password", "secret", "token", "api_key", "apikey"}
)
_SECRET_SUFFIXES = ("password", "token", "secret", "api_key", "authorization", "cookie")
_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")


@lru_cache(maxsize=4_096)  # field names: a small, fixed set in practice
def _is_secret_key(key: str) -> bool:
    lowered = key.lower().replace("-", "_")
    return lowered in _SECRET_KEYS or lowered.endswith(_SECRET_SUFFIXES)


def _scrub_text(value: str) -> str:
    # Every value of every event passes here (a dozen per request): the patterns run
    # only on text that could hold one ("bearer" in any case, or a JWT's "eyJ").
    lowered = value.lower()
    if "bearer" not in lowered and "eyj" not in lowered:
        return value
    return _JWT.sub(REDACTED, _BEARER.sub(rf"\1 {REDACTED}", value))


def scrub_value(value: object) -> object:
    if isinstance(value, str):
        return _scrub_text(value)
    if isinstance(value, Mapping):
        return {
            k: (REDACTED if isinstance(k, str) and _is_secret_key(k) else scrub_value(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [scrub_value(item) for item in value]
    return value


def scrub_secrets(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Drop authorization headers, tokens, passwords and cookies from every event."""
    return cast(EventDict, scrub_value(event_dict))


def configure_logging(level: str, json_logs: bool) -> None:
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        scrub_secrets,
    ]
    json_renderer: Processor = structlog.processors.JSONRenderer()
    renderer = json_renderer if json_logs else structlog.dev.ConsoleRenderer()
    structlog.configure(
        # Events under the level are dropped first, before any processor runs.
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    # The logging HOWTO's "Optimization" section: records need no thread or process
    # details that nobody renders (about a tenth of a line's cost, bench/README.md).
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # Our middleware logs each request with its id and duration; uvicorn's line would repeat it.
    logging.getLogger("uvicorn.access").disabled = True


def bind_request_fields(fields: MutableMapping[str, object]) -> None:
    structlog.contextvars.bind_contextvars(**{k: v for k, v in fields.items() if v is not None})
