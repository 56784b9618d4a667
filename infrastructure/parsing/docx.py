"""DOCX paragraphs and tables with python-docx, after zip-bomb checks on the archive."""

from __future__ import annotations

import zipfile
from pathlib import Path

import docx
from docx.opc.exceptions import PackageNotFoundError

from domain.entities import Page, ParsedDocument
from domain.errors import DocumentTooLarge, ParseFailed
from infrastructure.parsing.limits import ParseLimits


def check_archive(path: Path, limits: ParseLimits) -> None:
    """Refuse archives that would expand far beyond their size (zip bombs)."""
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise ParseFailed("The DOCX file is not a valid archive.") from exc
    if len(entries) > limits.max_docx_entries:
        raise DocumentTooLarge("The DOCX archive has too many entries.")
    total = sum(entry.file_size for entry in entries)
    if total > limits.max_docx_uncompressed_bytes:
        raise DocumentTooLarge("The DOCX file expands beyond the size limit.")
    for entry in entries:
        if (
            entry.file_size > 1_000_000
            and entry.file_size > entry.compress_size * limits.max_docx_compression_ratio
        ):
            raise DocumentTooLarge("The DOCX file is compressed suspiciously well (zip bomb?).")
    if not any(entry.filename == "word/document.xml" for entry in entries):
        raise ParseFailed("The file is a ZIP archive but not a Word document.")


def parse_docx(path: Path, limits: ParseLimits) -> ParsedDocument:
    check_archive(path, limits)
    try:
        document = docx.Document(str(path))
    except (PackageNotFoundError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise ParseFailed("The DOCX file could not be read.") from exc
    except Exception as exc:  # lxml raises its own XMLSyntaxError family
        raise ParseFailed("The DOCX file could not be read.") from exc
    blocks = [paragraph.text for paragraph in document.paragraphs]
    for table in document.tables:
        for row in table.rows:
            blocks.append(" | ".join(cell.text.strip() for cell in row.cells))
    text = "\n\n".join(block.strip() for block in blocks if block.strip())
    if len(text) > limits.max_chars:
        raise DocumentTooLarge(f"The document has more than {limits.max_chars} characters.")
    return ParsedDocument(pages=[Page(number=None, text=text)], page_count=None)
