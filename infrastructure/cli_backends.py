"""What every `foundry` command starts from: its settings, and the backends it runs on."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from infrastructure.cli_signals import STOP_SIGNALS
from infrastructure.container import BackendUrls
from infrastructure.runtime import Backends
from infrastructure.settings import Settings


def settings_from(args: argparse.Namespace) -> Settings:
    overrides: dict[str, object] = {}
    if getattr(args, "state_dir", None):
        overrides["state_dir"] = Path(args.state_dir)
    if getattr(args, "host", None):
        overrides["host"] = args.host
    if getattr(args, "port", None):
        overrides["port"] = args.port
    return Settings(**overrides)  # type: ignore[arg-type]


def start_backends(backends: Backends) -> BackendUrls:
    with STOP_SIGNALS.deferred():
        return backends.start()


@contextmanager
def running_backends(settings: Settings) -> Iterator[BackendUrls]:
    """The backends of a command that runs to its end: started, and stopped however it
    ends. SIGTERM or a closed terminal unwinds as Ctrl-C does; killed without its
    ``finally``, the command would leave the embedded servers running."""
    STOP_SIGNALS.install()
    backends = Backends(settings)
    try:
        yield start_backends(backends)
    finally:
        STOP_SIGNALS.stopping()
        backends.stop()
