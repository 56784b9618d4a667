"""Sniffing, display names, HTML to text and charset detection."""

from __future__ import annotations

from pathlib import Path

import pytest

from domain.errors import DocumentTooLarge, ParseFailed, UnsupportedFileType
from domain.ingestion.filetypes import FileKind, detect_kind, safe_filename
from infrastructure.parsing.html import html_to_text
from infrastructure.parsing.limits import ParseLimits
from infrastructure.parsing.parser import FileParser, storable
from infrastructure.parsing.text import decode_text
from tests.documents import pdf_with_unicode_map


@pytest.mark.parametrize(
    ("name", "declared", "head", "kind"),
    [
        ("a.pdf", "application/pdf", b"%PDF-1.7\n...", FileKind.PDF),
        ("a.PDF", None, b"\n%PDF-1.4", FileKind.PDF),
        ("a.docx", "application/octet-stream", b"PK\x03\x04rest", FileKind.DOCX),
        ("a.md", "text/plain", b"# Title", FileKind.MARKDOWN),
        ("a.html", "text/html; charset=utf-8", b"<!DOCTYPE html><html>", FileKind.HTML),
        ("a.txt", "", "\ufeffbom text".encode("utf-16"), FileKind.TEXT),
    ],
)
def test_accepted_kinds(name: str, declared: str | None, head: bytes, kind: FileKind) -> None:
    assert detect_kind(name, declared, head) is kind


@pytest.mark.parametrize(
    ("name", "declared", "head"),
    [
        ("setup.pdf", "application/pdf", b"MZ\x90\x00"),
        ("linux.txt", "text/plain", b"\x7fELF\x02\x01"),
        ("photo.md", None, b"\x89PNG\r\n\x1a\n"),
        ("archive.docx", None, b"%PDF-1.4"),
        ("doc.pdf", "text/html", b"%PDF-1.4"),
        ("page.html", "text/html", b"plain words only"),
        ("binary.txt", None, b"abc\x00def"),
        ("script.sh", None, b"#!/bin/sh"),
        ("noext", None, b"hello"),
    ],
)
def test_refused_kinds(name: str, declared: str | None, head: bytes) -> None:
    with pytest.raises(UnsupportedFileType):
        detect_kind(name, declared, head)


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\report.pdf", "report.pdf"),
        ("..", "untitled"),
        ("", "untitled"),
        ("bad\x00name\n.txt", "badname.txt"),
        ("x" * 300 + ".pdf", "x" * 247 + ".pdf"),
    ],
)
def test_safe_filename(raw: str, shown: str) -> None:
    assert safe_filename(raw) == shown


def test_html_to_text_drops_scripts_styles_and_keeps_blocks() -> None:
    html = (
        "<html><head><title>T</title><style>.x{}</style></head><body>"
        "<script>var secret = 1;</script><h1>Heading</h1><p>First &amp; second.</p>"
        "<ul><li>one</li><li>two</li></ul><table><tr><td>a</td><td>b</td></tr></table>"
        "<noscript>enable js</noscript><template><p>hidden</p></template></body></html>"
    )
    text = html_to_text(html)
    assert "secret" not in text and ".x{}" not in text
    assert "hidden" not in text
    assert "Heading\n\nFirst & second." in text
    assert "one\ntwo" in text
    assert "a b" in text


def test_html5_with_omitted_tags_keeps_its_text() -> None:
    assert "Hello world" in html_to_text("<html><head><title>T</title><body><p>Hello world")
    assert "After" in html_to_text("<body><noscript>enable js<p>After</body>")


def test_charset_detection_keeps_each_script() -> None:
    limits = ParseLimits()
    assert decode_text("naïve café".encode(), limits) == "naïve café"
    assert "crème" in decode_text("Café crème au lait, été.".encode("latin-1"), limits)
    russian = "Привет, как дела? Это тестовый текст на русском языке."
    assert decode_text(russian.encode("cp1251"), limits) == russian
    assert decode_text(b"\xef\xbb\xbfwith bom\r\nline", limits) == "with bom\nline"


def test_text_limits() -> None:
    with pytest.raises(DocumentTooLarge):
        decode_text(b"a" * 2_000, ParseLimits(max_chars=1_000))
    with pytest.raises(ParseFailed):
        decode_text(b"abc\x00def", ParseLimits())


def test_a_pdf_that_claims_lone_surrogates_parses_to_storable_text(tmp_path: Path) -> None:
    # pypdf decodes ToUnicode maps with "surrogatepass"; the tokenizer and PostgreSQL
    # refuse what it then returns, which left such a document processing until retried out.
    path = tmp_path / "odd.pdf"
    path.write_bytes(pdf_with_unicode_map(b"The keeper logs A storm", {0x41: "D800"}))
    [page] = FileParser(ParseLimits()).parse(path, FileKind.PDF).pages
    assert page.text == "The keeper logs \ufffd storm"
    assert page.text.encode("utf-8")
    assert (
        storable("pair \U0001f600 kept, lone \udfff not") == "pair \U0001f600 kept, lone \ufffd not"
    )
