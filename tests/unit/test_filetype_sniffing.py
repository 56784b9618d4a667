"""Sniffing genuine text and HTML5: printable magic numbers and HTML without <html>."""

from __future__ import annotations

import pytest

from domain.errors import UnsupportedFileType
from domain.ingestion.filetypes import FileKind, detect_kind


@pytest.mark.parametrize(
    ("name", "head", "kind"),
    [
        # Text that starts with what is also a magic number, as words.
        ("notes.txt", b"MZ was the first tag we used for the project.\n", FileKind.TEXT),
        ("history.md", b"GIF89a: the format of 1989, still around.", FileKind.MARKDOWN),
        ("dog.txt", b"Rar! said the dog, and ran off.", FileKind.TEXT),
        ("spec.txt", b"%PDF-1.7 is the version this note is about.", FileKind.TEXT),
        ("accents.txt", "MZ caf\u00e9 na\u00efve \u2014 r\u00e9sum\u00e9".encode(), FileKind.TEXT),
        # A UTF-8 character cut off by the end of the head is no reason to refuse.
        ("cut.txt", "MZ caf\u00e9".encode()[:-1], FileKind.TEXT),
        # HTML5 with no <html>, <head> or <body>, nor doctype.
        ("page.html", b'<meta charset="utf-8">\n<title>Tides</title><p>Hi', FileKind.HTML),
        ("page.html", b"<h1>Tides</h1>\n<p>High water at noon.</p>", FileKind.HTML),
        ("page.htm", b"\xef\xbb\xbf\n   <section id=a>text</section>", FileKind.HTML),
        ("page.html", b"<!-- exported -->\n<h2>Tides</h2>", FileKind.HTML),
        ("page.html", b"<P>Upper case tags</P>", FileKind.HTML),
        ("page.html", b"<my-widget>custom elements</my-widget>", FileKind.HTML),
    ],
)
def test_genuine_text_and_html_are_accepted(name: str, head: bytes, kind: FileKind) -> None:
    assert detect_kind(name, None, head) is kind


@pytest.mark.parametrize(
    ("name", "head"),
    [
        # The real formats, renamed: binary fields right after the printable magic.
        ("setup.txt", b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff"),
        ("setup.md", b"MZP\x00\x02\x00\x00\x00\x04\x00\x0f\x00"),
        ("image.txt", b"GIF89a\x10\x00\x10\x00\x80\x00\x00\xff\xff\xff"),
        ("archive.md", b"Rar!\x1a\x07\x01\x00\x33\x92\xb5\xe5"),
        ("document.txt", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>"),
        # Non-printable magic numbers stay refused whatever follows.
        ("image.txt", b"\x89PNG\r\n\x1a\n"),
        ("archive.txt", b"PK\x03\x04 then words"),
        ("linux.md", b"\x7fELF words"),
        # An .html that is plain words, or whose "tag" is none.
        ("page.html", b"Tides and currents, no markup at all."),
        ("page.html", b"<3 tides"),
        ("page.html", b"< p>not a tag</p>"),
        # HTML-looking text in a binary: still not text.
        ("page.html", b"<h1>\x00\x01\x02</h1>"),
    ],
)
def test_binaries_disguised_as_text_and_non_html_are_refused(name: str, head: bytes) -> None:
    with pytest.raises(UnsupportedFileType):
        detect_kind(name, None, head)
