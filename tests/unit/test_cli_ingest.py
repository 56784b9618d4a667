"""`foundry ingest`: which files it takes, its progress bar, and what it reports."""

from __future__ import annotations

import io
import uuid
from pathlib import Path
from typing import cast

import pytest

from domain.entities import Document, Principal, Role
from domain.errors import DuplicateDocument
from domain.ingestion.ports import IncomingFile
from domain.services.documents import UploadResult
from infrastructure.cli_ingest import ProgressBar, _upload, collect_files
from infrastructure.container import Container


def test_progress_bar_prints_only_changes_when_not_a_terminal() -> None:
    out = io.StringIO()
    bar = ProgressBar("ingest", 4, out)
    for done in (0, 0, 1, 1, 1, 4):
        bar.show(done)
    bar.finish()
    lines = out.getvalue().splitlines()
    assert [line.split("]")[1].strip() for line in lines] == ["0/4", "1/4", "4/4"]


def test_collect_files_keeps_supported_files_recursively(tmp_path: Path) -> None:
    root = tmp_path
    (root / "sub").mkdir()
    for name in ("a.pdf", "b.MD", "sub/c.docx", "sub/d.exe", "e.png", "sub/f.txt"):
        (root / name).write_bytes(b"x")
    found = [p.relative_to(root).as_posix() for p in collect_files([root]).files]
    assert found == ["a.pdf", "b.MD", "sub/c.docx", "sub/f.txt"]


def test_collect_files_names_what_it_cannot_take_and_takes_each_file_once(
    tmp_path: Path,
) -> None:
    (tmp_path / "a.md").write_bytes(b"x")
    (tmp_path / "tool.exe").write_bytes(b"x")
    collected = collect_files(
        [tmp_path / "a.md", tmp_path, tmp_path / "typo.pdf", tmp_path / "tool.exe"]
    )
    assert collected.files == [tmp_path / "a.md"]
    assert [(Path(name).name, code) for name, code, _ in collected.skipped] == [
        ("typo.pdf", "NOT_FOUND"),
        ("tool.exe", "UNSUPPORTED_FILE_TYPE"),
    ]


class _Documents:
    """The documents service as `foundry ingest` sees it: a.md is new, c.md was ingested
    by an earlier run."""

    def __init__(self) -> None:
        self.services = self
        self.documents = self
        self.read: list[str] = []

    async def upload(
        self, principal: Principal, files: list[IncomingFile], ip: str | None
    ) -> list[UploadResult]:
        [incoming] = files
        while await incoming.read(1024):
            pass
        self.read.append(incoming.filename)
        if incoming.filename == "c.md":
            return [UploadResult(incoming.filename, error=DuplicateDocument())]
        return [UploadResult(incoming.filename, document=cast(Document, incoming.filename))]


async def test_an_unreadable_file_is_reported_and_the_rest_go_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("a.md", "b.md", "c.md"):
        (tmp_path / name).write_bytes(b"words")
    files = collect_files([tmp_path]).files
    (tmp_path / "b.md").unlink()  # gone (or unreadable) after it was listed
    service = _Documents()
    principal = Principal(uuid.uuid4(), uuid.uuid4(), Role.EDITOR, uuid.uuid4())

    documents, failures = await _upload(cast(Container, service), principal, files)

    assert service.read == ["a.md", "c.md"]
    assert documents == cast(list[Document], ["a.md"])
    assert [(Path(name).name, code) for name, code, _ in failures] == [("b.md", "UNREADABLE")]
    assert "1 file(s) already in the organisation" in capsys.readouterr().err
