"""Small text helpers shared by answerers: snippets and streaming pieces."""

from __future__ import annotations

SNIPPET_CHARS = 400


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    """``text`` with whitespace collapsed, cut at a word near ``limit`` characters."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    return (flat[:limit].rsplit(" ", 1)[0] or flat[:limit]) + "…"


def word_pieces(text: str, words_per_piece: int = 3) -> list[str]:
    """``text`` cut into pieces of a few words; joined, they give ``text`` back exactly."""
    pieces: list[str] = []
    start = 0
    seen = 0
    for index, char in enumerate(text):
        if char == " " and index > start:
            seen += 1
            if seen == words_per_piece:
                pieces.append(text[start : index + 1])
                start = index + 1
                seen = 0
    if start < len(text):
        pieces.append(text[start:])
    return pieces
