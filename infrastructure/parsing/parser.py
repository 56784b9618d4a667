"""The DocumentParser adapter: picks the format's parser. No text at all is
EMPTY_DOCUMENT, except for a PDF that has pages: that is NO_TEXT_LAYER (a scan)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from domain.entities import Page, ParsedDocument
from domain.errors import EmptyDocument, NoTextLayer
from domain.ingestion.filetypes import FileKind
from infrastructure.parsing.docx import parse_docx
from infrastructure.parsing.html import html_to_text
from infrastructure.parsing.limits import ParseLimits
from infrastructure.parsing.pdf import parse_pdf
from infrastructure.parsing.text import read_text

# pypdf decodes a font's ToUnicode map with "surrogatepass", so a crafted or broken PDF
# can yield lone UTF-16 surrogates, which neither the tokenizer nor PostgreSQL accepts.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def storable(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD, as a UTF-8 decoder would."""
    return text if text.isascii() else _LONE_SURROGATE.sub("\ufffd", text)


class FileParser:
    def __init__(self, limits: ParseLimits) -> None:
        self._limits = limits

    def parse(
        self, path: Path, kind: FileKind, abandoned: Callable[[], bool] | None = None
    ) -> ParsedDocument:
        """In this thread. ``abandoned`` is ignored: a parse in progress here cannot be
        stopped (the sandbox, which runs this in a child it can kill, honours it)."""
        if kind is FileKind.PDF:
            parsed = parse_pdf(path, self._limits)
        elif kind is FileKind.DOCX:
            parsed = parse_docx(path, self._limits)
        elif kind is FileKind.HTML:
            parsed = ParsedDocument([Page(None, html_to_text(read_text(path, self._limits)))], None)
        else:
            parsed = ParsedDocument([Page(None, read_text(path, self._limits))], None)
        pages = [Page(page.number, storable(page.text)) for page in parsed.pages]
        if not any(page.text.strip() for page in pages):
            # Only a PDF counts its pages: pages without text are images (a scan), which
            # the user can fix with OCR; a file with nothing in it is another matter.
            if parsed.page_count:
                raise NoTextLayer()
            raise EmptyDocument()
        return ParsedDocument(pages, parsed.page_count)
