"""Plain text and Markdown: charset detection, then the text as it is."""

from __future__ import annotations

from pathlib import Path

from charset_normalizer import from_bytes

from domain.errors import DocumentTooLarge, ParseFailed
from infrastructure.parsing.limits import ParseLimits


def decode_text(raw: bytes, limits: ParseLimits) -> str:
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = _detect(raw)
    if len(text) > limits.max_chars:
        raise DocumentTooLarge(f"The document has more than {limits.max_chars} characters.")
    if "\x00" in text:
        raise ParseFailed("The file contains binary data.")
    return text.replace("\r\n", "\n").replace("\r", "\n")


# Short samples often fit several single-byte code pages equally well; among equals,
# prefer the Western European ones, by far the most common for non-UTF-8 files.
_PREFERRED = ("cp1252", "latin_1", "iso8859_15")


def _detect(raw: bytes) -> str:
    matches = list(from_bytes(raw))
    if not matches:
        raise ParseFailed("The text encoding could not be recognised.")
    best = matches[0]
    for match in matches:
        if (
            match.encoding in _PREFERRED
            and match.chaos <= best.chaos
            and match.coherence >= best.coherence
        ):
            return str(match)
    return str(best)


def read_text(path: Path, limits: ParseLimits) -> str:
    return decode_text(path.read_bytes(), limits)
