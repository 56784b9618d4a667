"""The parse server: a small helper process that forks one child per parse.

A worker starts it once (``python -m infrastructure.parsing.parse_server SOCKET``, see
sandbox.py) and reads its authentication key from stdin. It imports the parsers, then
forks a child for each connection; the child tells the worker its pid, limits its own
address space and CPU time, parses, sends one outcome and exits. Forking from this
single-threaded process (not from the worker, with its model and database threads) is
safe, and a fork costs milliseconds where a new interpreter would cost a second. The
server exits when the worker does (its stdin closes).
"""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
from multiprocessing.connection import Connection, Listener
from pathlib import Path
from typing import Literal

from domain.entities import ParsedDocument
from domain.errors import ErrorCode, IngestionFailed
from domain.ingestion.filetypes import FileKind
from infrastructure.parsing.limits import ParseLimits
from infrastructure.parsing.parser import FileParser

# CPU seconds a child gets beyond its wall-clock budget before the kernel stops it:
# the worker kills it first, unless the worker itself is gone.
CPU_GRACE_SECONDS = 5

Request = tuple[str, str, ParseLimits, float, int]  # path, kind, limits, timeout, memory
Outcome = (
    tuple[Literal["parsed"], ParsedDocument]
    | tuple[Literal["failed"], str, str]  # code, message
    | tuple[Literal["memory"]]
    | tuple[Literal["crashed"], str]  # the exception, for the logs
)


def serve(address: str, authkey: bytes) -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    # Ctrl-C reaches the whole process group; this server ends with its worker instead.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    listener = Listener(address, family="AF_UNIX", authkey=authkey)
    threading.Thread(target=_exit_with_worker, name="worker-watch", daemon=True).start()
    while True:
        try:
            conn = listener.accept()
        except (OSError, EOFError):  # a client that failed the handshake
            continue
        if os.fork() == 0:
            try:
                handle(conn)
            finally:
                os._exit(0)
        conn.close()


def handle(conn: Connection) -> None:
    """In the forked child: one request, the pid, one outcome."""
    path, kind, limits, timeout_seconds, memory_bytes = conn.recv()
    conn.send(("pid", os.getpid()))
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    cpu = math.ceil(timeout_seconds) + CPU_GRACE_SECONDS
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    outcome: Outcome
    try:
        outcome = ("parsed", FileParser(limits).parse(Path(path), FileKind(kind)))
    except MemoryError:
        outcome = ("memory",)
    except IngestionFailed as exc:
        outcome = ("failed", exc.code.value, exc.message)
    except RecursionError:
        outcome = ("failed", ErrorCode.PARSE_FAILED.value, "The document is too deeply nested.")
    except Exception as exc:  # any failure of a parser means "unreadable"
        outcome = ("crashed", f"{type(exc).__name__}: {exc}")
    try:
        conn.send(outcome)
    except MemoryError:  # the text was read, but sending it did not fit in the budget
        conn.send(("memory",))


def _exit_with_worker() -> None:
    sys.stdin.buffer.read()  # returns when the worker closes the pipe or exits
    os._exit(0)


def main() -> None:
    authkey = bytes.fromhex(sys.stdin.buffer.readline().decode().strip())
    serve(sys.argv[1], authkey)


if __name__ == "__main__":
    main()
