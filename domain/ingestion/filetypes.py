"""What an uploaded file really is: magic numbers must agree with its name and declared type."""

from __future__ import annotations

import codecs
import re
from enum import StrEnum
from pathlib import PurePosixPath

from domain.errors import UnsupportedFileType

SNIFF_BYTES = 2_048
GENERIC_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream"})


class FileKind(StrEnum):
    PDF = "pdf"
    DOCX = "docx"
    MARKDOWN = "markdown"
    HTML = "html"
    TEXT = "text"

    @property
    def mime_type(self) -> str:
        return _CANONICAL_MIME[self]


_CANONICAL_MIME = {
    FileKind.PDF: "application/pdf",
    FileKind.DOCX: "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    FileKind.MARKDOWN: "text/markdown",
    FileKind.HTML: "text/html",
    FileKind.TEXT: "text/plain",
}
SUPPORTED_SUFFIXES: frozenset[str]
_EXTENSIONS = {
    ".pdf": FileKind.PDF,
    ".docx": FileKind.DOCX,
    ".md": FileKind.MARKDOWN,
    ".markdown": FileKind.MARKDOWN,
    ".html": FileKind.HTML,
    ".htm": FileKind.HTML,
    ".txt": FileKind.TEXT,
    ".text": FileKind.TEXT,
}
SUPPORTED_SUFFIXES = frozenset(_EXTENSIONS)
_DECLARED = {
    FileKind.PDF: {"application/pdf", "application/x-pdf"},
    FileKind.DOCX: {_CANONICAL_MIME[FileKind.DOCX], "application/zip"},
    FileKind.MARKDOWN: {"text/markdown", "text/x-markdown", "text/plain"},
    FileKind.HTML: {"text/html", "application/xhtml+xml"},
    FileKind.TEXT: {"text/plain"},
}
# Formats we refuse even when renamed to an accepted extension: magic numbers no text
# starts with (each holds a byte that is no printable text).
_BINARY_MAGIC = (
    b"PK\x03\x04",
    b"\x7fELF",
    b"\xca\xfe\xba\xbe",
    b"\xcf\xfa\xed\xfe",
    b"\x89PNG",
    b"\xff\xd8\xff",
    b"\x1f\x8b",
    b"7z\xbc\xaf",
    b"\xd0\xcf\x11\xe0",
)
# Magic numbers that are printable words a text may well start with ("MZ was here",
# "GIF89a is old", "Rar! said the dog"): such a head is refused only when what follows
# is no text either, as in the real formats (binary fields right after the magic).
_PRINTABLE_MAGIC = (b"%PDF-", b"MZ", b"GIF8", b"Rar!")
# C0 controls that text does not hold (tab, line feed, vertical tab, form feed, carriage
# return and escape it may), and DEL.
_BINARY_CONTROLS = re.compile(rb"[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f]")
_TEXT_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")
# What an HTML file starts with, after a BOM and white space: a comment, a doctype, an
# XML declaration (XHTML), or any tag; HTML5 needs no <html>, <head> or <body>.
_HTML_START = re.compile(rb"<(?:!doctype\b|\?xml\b|[a-z][a-z0-9-]*(?:[\s/>]|$))")


def safe_filename(raw: str) -> str:
    """A display name: the last path component, without control characters, at most 255 chars."""
    name = PurePosixPath(raw.replace("\\", "/")).name
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    if name in ("", ".", ".."):
        name = "untitled"
    if len(name) > 255:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: 250 - len(ext)] + dot + ext) if dot and len(ext) <= 10 else name[:255]
    return name


def _looks_like_text(head: bytes) -> bool:
    if head.startswith(_TEXT_BOMS):
        # UTF-16 text legitimately contains NUL bytes.
        return True
    if b"\x00" in head or head.startswith(_BINARY_MAGIC):
        return False
    if head.startswith(_PRINTABLE_MAGIC):
        return _decodes_as_text(head)
    return True


def _decodes_as_text(head: bytes) -> bool:
    """UTF-8 (a character cut off at the end of the head is fine) without the control
    bytes binary formats are full of."""
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return _BINARY_CONTROLS.search(head) is None


def _looks_like_html(head: bytes) -> bool:
    lowered = head.lstrip(b"\xef\xbb\xbf \t\r\n\f").lower()
    return (
        lowered.startswith(b"<!--")
        or _HTML_START.match(lowered) is not None
        or b"<html" in lowered
        or b"<body" in lowered
    )


def detect_kind(filename: str, declared_type: str | None, head: bytes) -> FileKind:
    """The file's kind, or UnsupportedFileType when content, name and type disagree."""
    suffix = PurePosixPath(filename.lower()).suffix
    kind = _EXTENSIONS.get(suffix)
    if kind is None:
        raise UnsupportedFileType(f"'{suffix or filename}' files are not supported.")
    declared = (declared_type or "").split(";")[0].strip().lower()
    if declared not in GENERIC_TYPES and declared not in _DECLARED[kind]:
        raise UnsupportedFileType(f"The declared type {declared!r} does not match a {kind} file.")
    if kind is FileKind.PDF:
        matches = b"%PDF-" in head[:1_024]
    elif kind is FileKind.DOCX:
        matches = head.startswith(b"PK\x03\x04")
    elif kind is FileKind.HTML:
        matches = _looks_like_text(head) and _looks_like_html(head)
    else:
        matches = _looks_like_text(head)
    if not matches:
        raise UnsupportedFileType(f"The content of {filename!r} is not a {kind} file.")
    return kind
