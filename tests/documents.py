"""Small real documents built by the libraries users' tools use (fpdf2, python-docx, pypdf)."""

from __future__ import annotations

import io
import zipfile

import docx
from fpdf import FPDF
from PIL import Image, ImageDraw
from pypdf import PdfReader, PdfWriter

PARAGRAPHS = [
    "The lighthouse keeper logged the storm at midnight. Waves reached the second gallery, "
    "and the lamp stayed lit until dawn.",
    "Supply boats arrive every second Tuesday with oil, flour and letters from the mainland.",
    "In winter the keeper repaints the iron railings to keep rust away from the stairs.",
]


def pdf_bytes(pages: int = 3, topic: str = "lighthouse") -> bytes:
    document = FPDF()
    document.set_font("Helvetica", size=12)
    for number in range(1, pages + 1):
        document.add_page()
        text = f"Page {number} about the {topic}. " + " ".join(PARAGRAPHS)
        document.multi_cell(0, 8, text)
    return bytes(document.output())


def encrypted_pdf_bytes() -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf_bytes(1))))
    writer.encrypt(user_password="open-sesame", owner_password="owner-secret")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def truncated_pdf_bytes() -> bytes:
    whole = pdf_bytes(2)
    return whole[: len(whole) // 3]


def pdf_with_unicode_map(text: bytes, mapped: dict[int, str]) -> bytes:
    """One page showing ``text`` in a font whose ToUnicode map sends each byte to itself,
    except ``mapped`` (byte -> UTF-16BE hex): what a broken or crafted PDF can claim."""
    entries = "\n".join(f"<{code:02X}> <{utf16}>" for code, utf16 in mapped.items())
    cmap = (
        "/CIDInit /ProcSet findresource begin 12 dict begin begincmap\n"
        "1 begincodespacerange <00> <FF> endcodespacerange\n"
        "1 beginbfrange <20> <7E> <0020> endbfrange\n"
        f"{len(mapped)} beginbfchar\n{entries}\nendbfchar\n"
        "endcmap CMapName currentdict /CMap defineresource pop end end"
    ).encode()
    content = b"BT /F1 12 Tf 72 720 Td (" + text + b") Tj ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /ToUnicode 6 0 R >>",
        *(
            b"<< /Length %d >>\nstream\n%b\nendstream" % (len(data), data)
            for data in (content, cmap)
        ),
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%b\nendobj\n" % (number, body)
    table = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        table,
    )
    return bytes(out)


def docx_bytes(paragraphs: list[str] | None = None) -> bytes:
    document = docx.Document()
    document.add_heading("Keeper's handbook", level=1)
    for paragraph in paragraphs or PARAGRAPHS:
        document.add_paragraph(paragraph)
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text = "Lamp oil"
    table.cell(0, 1).text = "40 litres"
    table.cell(1, 0).text = "Flour"
    table.cell(1, 1).text = "25 kg"
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def docx_zip_bomb_bytes(expanded_mb: int = 20) -> bytes:
    """A ZIP that looks like a DOCX but whose document.xml expands enormously."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", b"\0" * (expanded_mb * 1024 * 1024))
    return buffer.getvalue()


MARKDOWN = (
    "# Tide tables\n\nHigh tide at the harbour is at **06:40** and 19:05.\n\n"
    "## Notes\n\n- Low tide exposes the northern reef.\n- Boats wait for the flood tide.\n"
)
HTML = (
    "<!doctype html><html><head><title>Harbour</title><style>p{color:red}</style>"
    "<script>alert('x')</script></head><body><h1>Harbour rules</h1>"
    "<p>Moor only at the eastern quay.</p><p>Fees are paid at the office.</p></body></html>"
)
LATIN1_TEXT = "Café crème at the quay: été opening hours are 8 to 18.\n".encode("latin-1")


def blank_pdf_bytes(pages: int = 2) -> bytes:
    """``pages`` blank pages, as a PDF tool writes them: no text and no images."""
    document = FPDF()
    for _ in range(pages):
        document.add_page()
    return bytes(document.output())


def scanned_pdf_bytes(pages: int = 2) -> bytes:
    """Pages that are each one picture of printed words, as a scanner without OCR makes."""
    document = FPDF()
    for number in range(1, pages + 1):
        picture = Image.new("L", (850, 1100), color=255)
        draw = ImageDraw.Draw(picture)
        for line in range(20):
            draw.text((60, 60 + 48 * line), f"Page {number}: the keeper's log, line {line}", 0)
        document.add_page()
        document.image(picture, x=0, y=0, w=document.w, h=document.h)
    return bytes(document.output())
