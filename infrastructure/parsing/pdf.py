"""PDF text per page with pypdf (pure Python), with page and character limits."""

from __future__ import annotations

import logging
from pathlib import Path

from pypdf import PdfReader
from pypdf.errors import FileNotDecryptedError, PdfReadError, PyPdfError

from domain.entities import Page, ParsedDocument
from domain.errors import DocumentTooLarge, EncryptedPdf, ParseFailed
from infrastructure.parsing.limits import ParseLimits

# pypdf logs every recoverable oddity of real-world PDFs as a warning.
logging.getLogger("pypdf").setLevel(logging.ERROR)


def parse_pdf(path: Path, limits: ParseLimits) -> ParsedDocument:
    try:
        reader = PdfReader(path, strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise EncryptedPdf()
        page_count = len(reader.pages)
        if page_count > limits.max_pdf_pages:
            raise DocumentTooLarge(f"PDFs can have at most {limits.max_pdf_pages} pages.")
        pages: list[Page] = []
        chars = 0
        for number, page in enumerate(reader.pages, start=1):
            text = (page.extract_text() or "").replace("\x00", "")
            chars += len(text)
            if chars > limits.max_chars:
                raise DocumentTooLarge(f"The PDF has more than {limits.max_chars} characters.")
            pages.append(Page(number=number, text=text))
    except FileNotDecryptedError as exc:
        raise EncryptedPdf() from exc
    except (PdfReadError, PyPdfError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ParseFailed("The PDF is damaged or incomplete.") from exc
    except RecursionError as exc:
        raise ParseFailed("The PDF structure is too deeply nested.") from exc
    return ParsedDocument(pages=pages, page_count=page_count)
