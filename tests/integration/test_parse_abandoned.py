"""A parse whose result is no longer wanted is given up at once (real parse server and
children): the sandbox kills the child when its caller abandons the parse, and a run
whose document is reprocessed or deleted during a slow parse ends superseded as soon as
its heartbeat finds the claim lost, long before the parse budget, its child gone."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Literal

import pytest

from domain.ingestion.filetypes import FileKind
from domain.ingestion.ports import ParseAbandoned
from infrastructure.container import BackendUrls, Container
from infrastructure.embedded import EmbeddedPostgres
from infrastructure.parsing.limits import ParseLimits
from infrastructure.parsing.sandbox import SandboxedParser
from infrastructure.settings import Settings
from tests.helpers import isolated_container
from tests.integration.test_parse_sandbox import _children, _until_no_children, hanging_document
from tests.integration.test_worker_recovery import _status

# Budgets far beyond what these tests take with the fix: without it, each parse runs
# until its budget kills it, and the run ends as a timeout, not superseded.
PARSE_TIMEOUT_SECONDS = 30.0


@pytest.fixture
def patient_sandbox() -> Iterator[SandboxedParser]:
    parser = SandboxedParser(
        ParseLimits(max_chars=10**9),
        timeout_seconds=PARSE_TIMEOUT_SECONDS,
        memory_bytes=400 * 1024 * 1024,
    )
    yield parser
    parser.close()


def _gone(pid: int) -> bool:
    """Whether the process has ended and been reaped (the parse server ignores SIGCHLD,
    so the kernel reaps its children at once)."""
    for _ in range(200):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.025)
    return False


def _first_child(parser: SandboxedParser, seconds: float = 30) -> int:
    """The first child the parse server forks (the server may not be started yet)."""
    deadline = time.monotonic() + seconds
    while parser._server is None or not (children := _children(parser)):
        assert time.monotonic() < deadline, "the parse server started no child"
        time.sleep(0.01)
    return children[0]


def test_an_abandoned_parse_kills_its_child_and_returns(
    patient_sandbox: SandboxedParser, tmp_path: Path
) -> None:
    text = tmp_path / "ok.txt"
    text.write_bytes(b"A plain file.")
    patient_sandbox.parse(text, FileKind.TEXT)  # the server is up
    assert _until_no_children(patient_sandbox) == []
    fifo = tmp_path / "never-written"
    os.mkfifo(fifo)  # opening it for reading blocks until a writer comes: never
    abandoned = threading.Event()
    started: list[int] = []

    def abandon_once_started() -> None:
        started.append(_first_child(patient_sandbox))
        abandoned.set()

    abandoner = threading.Thread(target=abandon_once_started)
    abandoner.start()
    try:
        with pytest.raises(ParseAbandoned):
            patient_sandbox.parse(fifo, FileKind.TEXT, abandoned.is_set)
    finally:
        abandoned.set()
        abandoner.join()
    [child] = started
    assert _gone(child)  # killed, not left to run until its budget
    assert _until_no_children(patient_sandbox) == []
    # A parse already abandoned does not start; the server goes on serving the others.
    with pytest.raises(ParseAbandoned):
        patient_sandbox.parse(text, FileKind.TEXT, abandoned.is_set)
    never = threading.Event()
    assert patient_sandbox.parse(text, FileKind.TEXT, never.is_set).pages[0].text == (
        "A plain file."
    )


@pytest.fixture
async def quick_heartbeat(
    settings: Settings, urls: BackendUrls, embedded_postgres: EmbeddedPostgres, tmp_path: Path
) -> AsyncIterator[Container]:
    """A database and queue of its own (no test worker takes its jobs or re-claims the
    document), a heartbeat every 0.2 s, a parse budget far longer than the test."""
    container = await isolated_container(
        settings,
        urls,
        embedded_postgres,
        "abandon",
        tmp_path / "state",
        parse_timeout_seconds=PARSE_TIMEOUT_SECONDS,
        ingest_heartbeat_seconds=0.2,
        ingest_heartbeat_timeout_seconds=60,
    )
    yield container
    await container.aclose()


@pytest.mark.parametrize("meanwhile", ["reprocess", "delete"])
async def test_a_run_superseded_during_a_slow_parse_ends_at_once_and_kills_its_child(
    quick_heartbeat: Container,
    caplog: pytest.LogCaptureFixture,
    meanwhile: Literal["reprocess", "delete"],
) -> None:
    container = quick_heartbeat
    principal, document, _ = await hanging_document(container, "slow.txt")
    ingestion = container.build_ingestion()
    parser = ingestion._parser
    assert isinstance(parser, SandboxedParser)
    with caplog.at_level(logging.INFO, logger="foundry.ingestion"):
        run = asyncio.create_task(ingestion.ingest(document.id))
        try:
            child = await asyncio.to_thread(_first_child, parser)
            if meanwhile == "reprocess":
                await container.services.documents.reprocess(principal, document.id, ip=None)
            else:
                assert await container.services.documents.delete(principal, document.id, ip=None)
        finally:
            # A guard only: with the abandonment the run ends a heartbeat later.
            outcome = await asyncio.wait_for(run, 4 * PARSE_TIMEOUT_SECONDS)
    assert outcome is None
    messages = [record.getMessage() for record in caplog.records]
    assert f"ingest.superseded document_id={document.id}" in messages
    assert await asyncio.to_thread(_gone, child)
    assert await asyncio.to_thread(_until_no_children, parser) == []
    expected = ("pending", 0) if meanwhile == "reprocess" else ("deleted", 1)
    assert await _status(container, document.id) == expected  # not failed, not retried
