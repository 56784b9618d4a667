"""What actors need at run time, set once by the worker process before it consumes."""

from __future__ import annotations

from dataclasses import dataclass

from domain.services.ingestion import IngestionService


@dataclass
class WorkerRuntime:
    ingestion: IngestionService


_current: WorkerRuntime | None = None


def install(runtime: WorkerRuntime) -> None:
    global _current  # noqa: PLW0603  # one runtime per worker process, set at start-up
    _current = runtime


def current() -> WorkerRuntime:
    if _current is None:
        raise RuntimeError(
            "the worker runtime is not installed; start workers with `foundry worker`"
        )
    return _current
