from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ParseLimits:
    max_pdf_pages: int = 2_000
    max_chars: int = 5_000_000
    max_docx_uncompressed_bytes: int = 100 * 1024 * 1024
    max_docx_entries: int = 2_000
    max_docx_compression_ratio: int = 100
