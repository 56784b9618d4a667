"""`foundry ingest PATH... --email E [--org ID]`: upload files and folders as a member, then
follow ingestion with a progress bar. Workers must be running (`foundry up` or `foundry worker`)."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from domain.entities import Document, DocumentStatus, Principal
from domain.errors import DomainError, ErrorCode, NotFound
from domain.ingestion.filetypes import SUPPORTED_SUFFIXES
from domain.ingestion.ports import IncomingFile
from infrastructure.container import BackendUrls, Container
from infrastructure.settings import Settings

READ_SIZE = 1024 * 1024
NO_WORKER_HINT_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class IngestRequest:
    paths: list[Path]
    email: str
    organization_id: uuid.UUID | None
    wait: bool
    timeout_seconds: float


@dataclass(frozen=True, slots=True)
class Collected:
    files: list[Path]
    # Paths named on the command line that cannot be ingested, with why: a typo must not
    # pass for success.
    skipped: list[tuple[str, str, str]]


def collect_files(paths: list[Path]) -> Collected:
    """Supported files under the given paths (folders recursively), in a stable order,
    each once however often it was named."""
    found: dict[Path, Path] = {}
    skipped: list[tuple[str, str, str]] = []
    for path in paths:
        if path.is_dir():
            candidates: Iterator[Path] = path.rglob("*")
        elif not path.exists():
            skipped.append((str(path), "NOT_FOUND", "no such file or folder"))
            continue
        elif path.suffix.lower() not in SUPPORTED_SUFFIXES:
            skipped.append((str(path), "UNSUPPORTED_FILE_TYPE", "not PDF, DOCX, MD, HTML or TXT"))
            continue
        else:
            candidates = iter([path])
        for file in sorted(
            p for p in candidates if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES
        ):
            found.setdefault(file.resolve(), file)
    return Collected(list(found.values()), skipped)


def reader(path: Path) -> Callable[[int], Awaitable[bytes]]:
    handle = path.open("rb")

    async def read(size: int) -> bytes:
        chunk = await asyncio.to_thread(
            handle.read, min(size, READ_SIZE) if size > 0 else READ_SIZE
        )
        if not chunk:
            handle.close()
        return chunk

    return read


class ProgressBar:
    """Redraws in place on a terminal; elsewhere (logs, CI) prints a line per change."""

    def __init__(self, label: str, total: int, out: TextIO = sys.stderr) -> None:
        self._label = label
        self._total = max(total, 1)
        self._out = out
        self._last: tuple[int, str] | None = None
        self._tty = out.isatty()

    def show(self, done: int, note: str = "") -> None:
        if (done, note) == self._last:
            return
        self._last = (done, note)
        width = 30
        filled = int(width * done / self._total)
        bar = "#" * filled + "." * (width - filled)
        line = f"{self._label} [{bar}] {done}/{self._total} {note}"
        self._out.write(f"\r{line.ljust(79)}" if self._tty else f"{line}\n")
        self._out.flush()

    def finish(self) -> None:
        if self._tty:
            self._out.write("\n")


async def _principal(
    container: Container, email: str, organization_id: uuid.UUID | None
) -> Principal:
    async with container.uow_factory.system() as uow:
        user = await uow.users.find_by_email(email.strip().lower())
        if user is None:
            raise NotFound(f"No account uses {email}.")
        memberships = await uow.memberships.list_for_user(user.id)
    chosen = next((m for m in memberships if organization_id in (None, m.organization.id)), None)
    if chosen is None:
        raise NotFound("That account is not a member of the organisation.")
    return Principal(user.id, chosen.organization.id, chosen.role, uuid.uuid4())


async def run_ingest(settings: Settings, urls: BackendUrls, request: IngestRequest) -> int:
    collected = collect_files(request.paths)
    files, failures = collected.files, list(collected.skipped)
    if not files:
        for name, code, message in failures:
            print(f"  {name}: {code} — {message}", file=sys.stderr)
        print("No PDF, DOCX, Markdown, HTML or text files found.", file=sys.stderr)
        return 1
    container = Container(settings, urls)
    try:
        principal = await _principal(container, request.email, request.organization_id)
        documents, refused = await _upload(container, principal, files)
        failures += refused
        if request.wait and documents:
            failures += await _follow(container, principal, documents, request.timeout_seconds)
    except DomainError as error:
        print(f"error: {error.code.value}: {error.message}", file=sys.stderr)
        return 2
    finally:
        await container.aclose()
    for name, code, message in failures:
        print(f"  {name}: {code} — {message}", file=sys.stderr)
    return 0 if not failures else 1


async def _upload(
    container: Container, principal: Principal, files: list[Path]
) -> tuple[list[Document], list[tuple[str, str, str]]]:
    bar = ProgressBar("upload ", len(files))
    documents: list[Document] = []
    failures: list[tuple[str, str, str]] = []
    already = 0
    for index, path in enumerate(files, start=1):
        try:
            read = reader(path)
        except OSError as error:  # unreadable, or gone since it was listed: the rest go on
            failures.append((str(path), "UNREADABLE", error.strerror or type(error).__name__))
        else:
            incoming = IncomingFile(filename=path.name, content_type=None, read=read)
            [result] = await container.services.documents.upload(principal, [incoming], ip="cli")
            if result.document is not None:
                documents.append(result.document)
            elif result.error is not None and result.error.code is ErrorCode.DUPLICATE_DOCUMENT:
                already += 1  # ingested before (a run run again): not a failure
            elif result.error is not None:
                failures.append((str(path), result.error.code.value, result.error.message))
        bar.show(index, f"({len(failures)} refused)" if failures else "")
    bar.finish()
    if already:
        print(f"{already} file(s) already in the organisation, left as they are.", file=sys.stderr)
    return documents, failures


async def _follow(
    container: Container, principal: Principal, documents: list[Document], timeout_seconds: float
) -> list[tuple[str, str, str]]:
    bar = ProgressBar("ingest ", len(documents))
    pending = {document.id: document for document in documents}
    failures: list[tuple[str, str, str]] = []
    started = time.monotonic()
    deadline = started + timeout_seconds
    done = 0
    hinted = False
    while pending and time.monotonic() < deadline:
        for document_id in list(pending):
            current = await container.services.documents.get(principal, document_id)
            if current is not None and current.status is not DocumentStatus.PENDING:
                hinted = True  # a worker has it: no hint needed
            if current is None or current.status in (DocumentStatus.READY, DocumentStatus.FAILED):
                pending.pop(document_id)
                done += 1
                if current is not None and current.status is DocumentStatus.FAILED:
                    failures.append(
                        (current.filename, current.error_code or "FAILED", "ingestion failed")
                    )
        bar.show(done, f"({len(failures)} failed)" if failures else "")
        if not hinted and time.monotonic() - started > NO_WORKER_HINT_SECONDS:
            hinted = True
            print(
                f"\nNo document has started after {NO_WORKER_HINT_SECONDS:.0f} s: is a worker "
                "running (`foundry up` or `foundry worker`)? Waiting on (--timeout).",
                file=sys.stderr,
            )
        if pending:
            await asyncio.sleep(0.5)
    bar.finish()
    for document in pending.values():
        failures.append((document.filename, "TIMEOUT", "still processing; is a worker running?"))
    return failures
