"""Parsing in forked children with a time and memory budget (real processes): the same
results and error codes as parsing in-thread, a hung parser killed at its budget, a
memory-hungry one stopped, and a worker's document ending FAILED with PARSE_TIMEOUT."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from domain.entities import Document, Principal, Role
from domain.errors import (
    DocumentTooLarge,
    EmptyDocument,
    EncryptedPdf,
    IngestionFailed,
    NoTextLayer,
    ParseFailed,
    ParseTimeout,
)
from domain.ingestion.filetypes import FileKind
from domain.services.accounts import RequestOrigin
from infrastructure.container import BackendUrls, Container
from infrastructure.database.models import DocumentRow
from infrastructure.embedded import EmbeddedPostgres
from infrastructure.parsing.limits import ParseLimits
from infrastructure.parsing.parser import FileParser
from infrastructure.parsing.sandbox import ParserCrashed, SandboxedParser
from infrastructure.settings import Settings
from tests.documents import (
    docx_bytes,
    docx_zip_bomb_bytes,
    encrypted_pdf_bytes,
    pdf_bytes,
    scanned_pdf_bytes,
    truncated_pdf_bytes,
)
from tests.helpers import PASSWORD, isolated_container, unique_email
from tests.integration.test_worker_recovery import _incoming

MIB = 1024 * 1024


@pytest.fixture
def sandbox() -> Iterator[SandboxedParser]:
    limits = ParseLimits(max_chars=10**9)
    parser = SandboxedParser(limits, timeout_seconds=1.0, memory_bytes=400 * MIB)
    yield parser
    parser.close()


def _children(parser: SandboxedParser) -> list[int]:
    """The parse server's live children (Linux: the kernel lists them)."""
    server = parser._server
    assert server is not None
    listed = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text()
    return [int(pid) for pid in listed.split()]


def _until_no_children(parser: SandboxedParser) -> list[int]:
    """A child exits just after its answer: give it a moment."""
    for _ in range(200):
        if not (children := _children(parser)):
            break
        time.sleep(0.025)
    return children


def test_results_and_error_codes_match_parsing_in_thread(
    sandbox: SandboxedParser, tmp_path: Path
) -> None:
    inline = FileParser(ParseLimits(max_chars=10**9))
    files = {
        "book.pdf": (pdf_bytes(pages=5), FileKind.PDF),
        "notes.docx": (docx_bytes(), FileKind.DOCX),
        "café.txt": (("Café crème, été. " * 50).encode("latin-1"), FileKind.TEXT),
    }
    for name, (content, kind) in files.items():
        path = tmp_path / name
        path.write_bytes(content)
        assert sandbox.parse(path, kind) == inline.parse(path, kind), name
    failures: dict[str, tuple[bytes, FileKind, type[IngestionFailed]]] = {
        "locked.pdf": (encrypted_pdf_bytes(), FileKind.PDF, EncryptedPdf),
        "cut.pdf": (truncated_pdf_bytes(), FileKind.PDF, ParseFailed),
        "blank.txt": (b"  \n ", FileKind.TEXT, EmptyDocument),
        "scan.pdf": (scanned_pdf_bytes(2), FileKind.PDF, NoTextLayer),
        "bomb.docx": (docx_zip_bomb_bytes(), FileKind.DOCX, DocumentTooLarge),
    }
    for name, (content, kind, error) in failures.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(error) as raised:
            sandbox.parse(path, kind)
        assert type(raised.value) is error, name
    assert _until_no_children(sandbox) == []  # every child has exited


def test_a_hung_parser_is_killed_when_its_time_is_up(
    sandbox: SandboxedParser, tmp_path: Path
) -> None:
    fifo = tmp_path / "never-written"
    os.mkfifo(fifo)  # opening it for reading blocks until a writer comes: never
    started = time.monotonic()
    with pytest.raises(ParseTimeout, match="longer than 1 s"):
        sandbox.parse(fifo, FileKind.TEXT)
    assert time.monotonic() - started < 30
    assert _until_no_children(sandbox) == []  # killed
    # The server goes on serving.
    text = tmp_path / "after.txt"
    text.write_bytes(b"Still parsing after a timeout.")
    assert sandbox.parse(text, FileKind.TEXT).pages[0].text == "Still parsing after a timeout."


def test_a_parse_over_its_memory_budget_is_document_too_large(
    sandbox: SandboxedParser, tmp_path: Path
) -> None:
    big = tmp_path / "big.txt"
    big.write_bytes(b"lorem ipsum dolor sit amet " * 4_000_000)  # 108 MB of text
    with pytest.raises(DocumentTooLarge, match="more than 400 MiB"):
        sandbox.parse(big, FileKind.TEXT)


def test_a_child_that_dies_is_a_crash_and_a_dead_server_is_restarted(
    sandbox: SandboxedParser, tmp_path: Path
) -> None:
    fifo = tmp_path / "hang"
    os.mkfifo(fifo)
    text = tmp_path / "ok.txt"
    text.write_bytes(b"A plain file.")
    sandbox.parse(text, FileKind.TEXT)  # the server is up
    assert _until_no_children(sandbox) == []

    def kill_the_child() -> None:
        for _ in range(200):
            if children := _children(sandbox):
                os.kill(children[0], signal.SIGKILL)
                return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_the_child)
    killer.start()
    with pytest.raises(ParserCrashed):
        sandbox.parse(fifo, FileKind.TEXT)
    killer.join()

    server = sandbox._server
    assert server is not None
    server.kill()
    server.wait()
    assert sandbox.parse(text, FileKind.TEXT).pages[0].text == "A plain file."
    assert sandbox._server is not None and sandbox._server.pid != server.pid


@pytest.fixture
async def short_budget(
    settings: Settings, urls: BackendUrls, embedded_postgres: EmbeddedPostgres, tmp_path: Path
) -> AsyncIterator[Container]:
    """A database and queue of its own (no test worker takes its jobs), parse budget 1 s."""
    container = await isolated_container(
        settings, urls, embedded_postgres, "sandbox", tmp_path / "state", parse_timeout_seconds=1.0
    )
    yield container
    await container.aclose()


async def hanging_document(container: Container, filename: str) -> tuple[Principal, Document, Path]:
    """An editor's uploaded document whose stored file is a pipe nobody writes to: its
    parse hangs until its budget ends. The editor, the document and the pipe."""
    session = await container.services.accounts.sign_up(
        unique_email(), PASSWORD, None, RequestOrigin()
    )
    principal = Principal(session.user.id, session.organization.id, Role.EDITOR, uuid.uuid4())
    [result] = await container.services.documents.upload(
        principal, [_incoming(filename, b"Replaced by a pipe nobody writes to.")], ip=None
    )
    document = result.document
    assert document is not None
    stored = container.blobs.local_path(document.storage_key)
    stored.unlink()
    os.mkfifo(stored)
    return principal, document, stored


async def test_a_document_whose_parse_runs_out_of_time_fails_with_parse_timeout(
    short_budget: Container,
) -> None:
    container = short_budget
    _, document, _ = await hanging_document(container, "stuck.txt")
    await container.build_ingestion().ingest(document.id)  # its parser stops with container
    async with container.session_factory() as db:
        status, code = (
            await db.execute(
                select(DocumentRow.status, DocumentRow.error_code).where(
                    DocumentRow.id == document.id
                )
            )
        ).one()
    assert (status, code) == ("failed", "PARSE_TIMEOUT")
