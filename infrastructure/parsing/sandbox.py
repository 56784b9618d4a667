"""Parsing in a child process, within a time and a memory budget.

Parsers meet arbitrary bytes. A crafted PDF can keep pypdf busy for as long as it
likes, or inflate a small stream into gigabytes; in a worker thread neither could be
stopped, and every organisation's uploads would wait behind it. So each parse runs in
a child forked by the parse server (parse_server.py, one per worker process, started on
first use). The child limits its own address space and CPU time; the worker kills it
when the wall-clock budget runs out, or as soon as the run that asked for the parse
abandons it (its document deleted or reprocessed meanwhile): a superseded parse does not
keep a parse slot busy until its budget ends.

Outcomes: the parsed text; the parser's own IngestionFailed (by code: each one the
parser raises must be in _FAILURES, or it comes back as PARSE_FAILED); PARSE_TIMEOUT;
DOCUMENT_TOO_LARGE when the memory budget ran out; ParserCrashed when the child died
without a word (a signal, a crash in native code), which the pipeline reports as
PARSE_FAILED; ParseAbandoned when the caller gave it up.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Client, Connection
from pathlib import Path

from domain.entities import ParsedDocument
from domain.errors import (
    DocumentTooLarge,
    EmptyDocument,
    EncryptedPdf,
    IngestionFailed,
    NoTextLayer,
    ParseFailed,
    ParseTimeout,
    ServiceUnavailable,
)
from domain.ingestion.filetypes import FileKind
from domain.ingestion.ports import ParseAbandoned
from infrastructure.parsing.limits import ParseLimits
from infrastructure.parsing.parse_server import Outcome

log = logging.getLogger("foundry.parsing")

START_TIMEOUT_SECONDS = 60.0  # the server imports the parsers first
PID_TIMEOUT_SECONDS = 30.0  # a fork, under load
# How often a parse that can be abandoned asks whether it is: how long an abandoned
# child may run on.
ABANDON_CHECK_SECONDS = 0.25
_FAILURES: dict[str, type[IngestionFailed]] = {
    failure.code.value: failure
    for failure in (ParseFailed, EncryptedPdf, EmptyDocument, NoTextLayer, DocumentTooLarge)
}
_PROJECT_ROOT = Path(__file__).resolve().parents[2]


class ParserCrashed(RuntimeError):
    """The parser raised something unexpected or its process died: unreadable input."""


class ParseServerUnavailable(ServiceUnavailable):
    """The parse server could not be started or reached: the document is retried later."""


class SandboxedParser:
    """A DocumentParser (blocking, thread-safe) that parses in forked children."""

    def __init__(self, limits: ParseLimits, timeout_seconds: float, memory_bytes: int) -> None:
        self._limits = limits
        self._timeout = timeout_seconds
        self._memory = memory_bytes
        self._lock = threading.Lock()
        self._server: subprocess.Popen[bytes] | None = None
        self._address = ""
        self._authkey = b""
        self._directory: tempfile.TemporaryDirectory[str] | None = None

    def parse(
        self, path: Path, kind: FileKind, abandoned: Callable[[], bool] | None = None
    ) -> ParsedDocument:
        """Parse in a child within the budgets; when ``abandoned`` returns True, kill the
        child and raise ParseAbandoned (it is asked a few times a second)."""
        if abandoned is not None and abandoned():
            raise ParseAbandoned()
        conn = self._connect()
        pid = 0
        try:
            conn.send((str(path), kind.value, self._limits, self._timeout, self._memory))
            if not conn.poll(PID_TIMEOUT_SECONDS):
                raise ParseServerUnavailable("the parse server did not start a child in time")
            _, pid = conn.recv()
            if not _answered(conn, pid, self._timeout, abandoned):
                _kill(pid)
                raise ParseTimeout(f"Reading the document took longer than {self._timeout:g} s.")
            outcome: Outcome = conn.recv()
        except (EOFError, ConnectionResetError) as exc:  # closed, or reset with unread data
            raise ParserCrashed("the parser process died without an answer") from exc
        finally:
            conn.close()
        return _result(outcome, self._memory)

    def close(self) -> None:
        """Stop the parse server (it also stops by itself when this process exits)."""
        with self._lock:
            self._stop_locked()

    def _connect(self) -> Connection:
        with self._lock:
            for attempt in range(2):
                if self._server is None or self._server.poll() is not None:
                    self._start_locked()
                try:
                    return Client(self._address, family="AF_UNIX", authkey=self._authkey)
                except OSError as exc:  # died since: start it again, once
                    log.warning("parse_server.unreachable attempt=%d error=%r", attempt, exc)
                    self._stop_locked()
            raise ParseServerUnavailable("the parse server cannot be reached")

    def _start_locked(self) -> None:
        self._stop_locked()
        self._directory = tempfile.TemporaryDirectory(prefix="foundry-parse-")
        self._address = str(Path(self._directory.name) / "server.sock")
        self._authkey = secrets.token_bytes(32)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            part for part in (str(_PROJECT_ROOT), env.get("PYTHONPATH")) if part
        )
        server = subprocess.Popen(  # noqa: S603  # our own module, no shell
            [sys.executable, "-m", "infrastructure.parsing.parse_server", self._address],
            stdin=subprocess.PIPE,
            env=env,
            cwd=_PROJECT_ROOT,
        )
        assert server.stdin is not None
        server.stdin.write(self._authkey.hex().encode() + b"\n")
        server.stdin.flush()  # stdin stays open: the server exits when it closes
        self._server = server
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not Path(self._address).exists():
            if server.poll() is not None or time.monotonic() > deadline:
                self._stop_locked()
                raise ParseServerUnavailable("the parse server did not start")
            time.sleep(0.01)
        log.info("parse_server.started pid=%d", server.pid)

    def _stop_locked(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            if server.stdin is not None:
                server.stdin.close()
            try:
                server.wait(timeout=5)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        if self._directory is not None:
            self._directory.cleanup()
            self._directory = None


def _answered(
    conn: Connection, pid: int, timeout: float, abandoned: Callable[[], bool] | None
) -> bool:
    """Whether the child answers within ``timeout`` seconds; ParseAbandoned, the child
    killed, as soon as ``abandoned`` says the answer is no longer wanted."""
    if abandoned is None:
        return conn.poll(timeout)
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if conn.poll(max(0.0, min(ABANDON_CHECK_SECONDS, remaining))):
            return True
        if abandoned():
            _kill(pid)
            raise ParseAbandoned()
        if remaining <= ABANDON_CHECK_SECONDS:
            return False


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it finished just now
        os.kill(pid, signal.SIGKILL)


def _result(outcome: Outcome, memory_bytes: int) -> ParsedDocument:
    if outcome[0] == "parsed":
        return outcome[1]
    if outcome[0] == "failed":
        _, code, message = outcome
        raise _FAILURES.get(code, ParseFailed)(message)
    if outcome[0] == "memory":
        raise DocumentTooLarge(
            f"Reading the document needed more than {memory_bytes // (1024 * 1024)} MiB."
        )
    raise ParserCrashed(outcome[1])
