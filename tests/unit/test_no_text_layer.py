"""A PDF with pages but no text (a scan, blank pages) is NO_TEXT_LAYER, told apart from a
document with nothing in it (EMPTY_DOCUMENT); both are bad files, never retried."""

from __future__ import annotations

import io
from pathlib import Path

import docx
import pytest
from fpdf import FPDF
from pypdf import PdfWriter

from domain.errors import (
    EmptyDocument,
    ErrorCode,
    IngestionFailed,
    NoTextLayer,
)
from domain.ingestion.filetypes import FileKind
from infrastructure.parsing.limits import ParseLimits
from infrastructure.parsing.parser import FileParser
from tests.documents import blank_pdf_bytes, scanned_pdf_bytes
from workers.retry_policy import retry_transient


def _no_pages_pdf_bytes() -> bytes:
    buffer = io.BytesIO()
    PdfWriter().write(buffer)
    return buffer.getvalue()


def _blank_docx_bytes() -> bytes:
    """A Word document with only an empty paragraph (Word's new document)."""
    buffer = io.BytesIO()
    document = docx.Document()
    document.add_paragraph("")
    document.save(buffer)
    return buffer.getvalue()


def _parse(tmp_path: Path, name: str, content: bytes, kind: FileKind) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    FileParser(ParseLimits()).parse(path, kind)


@pytest.mark.parametrize(
    "content",
    [blank_pdf_bytes(2), blank_pdf_bytes(1), scanned_pdf_bytes(2)],
    ids=["two-blank-pages", "one-blank-page", "two-scanned-pages"],
)
def test_a_pdf_with_pages_but_no_text_is_no_text_layer(tmp_path: Path, content: bytes) -> None:
    with pytest.raises(NoTextLayer) as raised:
        _parse(tmp_path, "scan.pdf", content, FileKind.PDF)
    assert raised.value.code is ErrorCode.NO_TEXT_LAYER
    assert "OCR" in raised.value.message


def test_a_pdf_with_a_page_of_text_among_scans_still_parses(tmp_path: Path) -> None:
    writer = PdfWriter(clone_from=io.BytesIO(scanned_pdf_bytes(1)))
    document = FPDF()
    document.add_page()
    document.set_font("Helvetica", size=12)
    document.multi_cell(0, 8, "The only typed page: the keeper's summary.")
    writer.append(io.BytesIO(bytes(document.output())))
    buffer = io.BytesIO()
    writer.write(buffer)
    path = tmp_path / "mixed.pdf"
    path.write_bytes(buffer.getvalue())
    parsed = FileParser(ParseLimits()).parse(path, FileKind.PDF)
    assert parsed.page_count == 2
    assert [page.text.strip() != "" for page in parsed.pages] == [False, True]


@pytest.mark.parametrize(
    ("name", "content", "kind"),
    [
        ("nothing.pdf", _no_pages_pdf_bytes(), FileKind.PDF),  # no page at all
        ("blank.docx", _blank_docx_bytes(), FileKind.DOCX),  # not paged
        ("blank.txt", b" \n\t\n", FileKind.TEXT),
        ("blank.md", b"\n\n", FileKind.MARKDOWN),
        ("blank.html", b"<html><body><img src='x.png'></body></html>", FileKind.HTML),
    ],
)
def test_other_documents_without_text_stay_empty_document(
    tmp_path: Path, name: str, content: bytes, kind: FileKind
) -> None:
    with pytest.raises(EmptyDocument) as raised:
        _parse(tmp_path, name, content, kind)
    assert type(raised.value) is EmptyDocument


def test_no_text_layer_is_a_bad_file_like_empty_document() -> None:
    # The ingestion service fails any IngestionFailed at once; the queue never retries it.
    assert isinstance(NoTextLayer(), IngestionFailed)
    assert not retry_transient(0, NoTextLayer(), 20)
