"""Recursive, token-sized chunking that keeps pages and character offsets.

Text is split at the coarsest separator that makes pieces fit (paragraph, then
line, then sentence, then word), pieces are merged back up to the chunk size,
and consecutive chunks share up to ``overlap_tokens`` tokens. Sizes are counted
in the embedder's own tokens, so no chunk is silently truncated by the model, and
in characters too (``ChunkingOptions.max_chars``): a tokenizer may stand for a long
run of text with one token.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from domain.entities import ChunkDraft, ParsedDocument

PAGE_SEPARATOR = "\n\n"
SEPARATORS: tuple[str, ...] = ("\n\n", "\n", ". ", "? ", "! ", "; ", ", ", " ")

Span = tuple[int, int]

# Characters a chunk may hold per token of its size. WordPiece turns any word over 100
# characters (a hash, a base64 blob, a line of "=====") into one [UNK], so counting
# tokens alone let such text make chunks of any length: megabytes in one chunk, past
# PostgreSQL's 1 MB tsvector limit and carried by every search hit that cites it.
# Prose averages 4 to 5 characters per token and long words, URLs and code fewer, so
# 12 leaves real text sized by its tokens alone (240 tokens: 2,880 characters).
CHARS_PER_TOKEN = 12


class Tokenizer(Protocol):
    def token_starts(self, text: str) -> Sequence[int]:
        """Character offset where each token of ``text`` starts, ascending (no special
        tokens)."""
        ...


@dataclass(frozen=True, slots=True)
class ChunkingOptions:
    size_tokens: int = 240
    overlap_tokens: int = 32

    def __post_init__(self) -> None:
        if self.size_tokens < 8 or not 0 <= self.overlap_tokens < self.size_tokens // 2:
            raise ValueError("chunk size must be >= 8 tokens and overlap < half of it")

    @property
    def max_chars(self) -> int:
        """The most characters a chunk holds, overlap included (see CHARS_PER_TOKEN)."""
        return self.size_tokens * CHARS_PER_TOKEN

    @property
    def overlap_chars(self) -> int:
        """The most characters a chunk repeats from the one before it."""
        return self.overlap_tokens * CHARS_PER_TOKEN


def chunk_document(
    document: ParsedDocument, tokenizer: Tokenizer, options: ChunkingOptions
) -> list[ChunkDraft]:
    drafts: list[ChunkDraft] = []
    base = 0
    for page in document.pages:
        starts = tokenizer.token_starts(page.text)
        splitter = _PageSplitter(page.text, starts, options)
        for start, end in splitter.spans():
            drafts.append(
                ChunkDraft(
                    ordinal=len(drafts),
                    text=page.text[start:end],
                    page=page.number,
                    char_start=base + start,
                    char_end=base + end,
                    token_count=splitter.count(start, end),
                )
            )
        base += len(page.text) + len(PAGE_SEPARATOR)
    return drafts


class _PageSplitter:
    def __init__(self, text: str, token_starts: Sequence[int], options: ChunkingOptions) -> None:
        self.text = text
        self.starts = token_starts
        self.size = options.size_tokens
        self.overlap = options.overlap_tokens
        self.overlap_chars = options.overlap_chars
        # Base chunks leave room for the overlap that is prepended afterwards.
        self.base = options.size_tokens - options.overlap_tokens
        self.base_chars = options.max_chars - options.overlap_chars

    def count(self, start: int, end: int) -> int:
        """Tokens in [start, end), the rest of a token cut by the character budget included."""
        first = bisect_left(self.starts, start)
        return bisect_left(self.starts, end) - first + self._cut_token(start, end, first)

    def _cut_token(self, start: int, end: int, first: int) -> int:
        """1 when [start, end) begins inside a token (one too long for the character
        budget was cut), whose rest is a token of its own for the model."""
        starts = self.starts
        if start >= end or start == 0 or (first < len(starts) and starts[first] == start):
            return 0
        return int(not self.text[start - 1].isspace() and not self.text[start].isspace())

    def _fits(self, start: int, end: int) -> bool:
        return end - start <= self.base_chars and self.count(start, end) <= self.base

    def spans(self) -> list[Span]:
        base = [_trim(self.text, s, e) for s, e in self._split(0, len(self.text), 0)]
        return self._with_overlap([span for span in base if span[1] > span[0]])

    def _split(self, start: int, end: int, level: int) -> list[Span]:
        if self._fits(start, end):
            return [(start, end)]
        if level >= len(SEPARATORS):
            return self._split_by_tokens(start, end)
        pieces = _pieces(self.text, start, end, SEPARATORS[level])
        if len(pieces) == 1:
            return self._split(start, end, level + 1)
        return self._merge(pieces, lambda s, e: self._split(s, e, level + 1))

    def _merge(
        self, pieces: list[Span], split_further: Callable[[int, int], list[Span]]
    ) -> list[Span]:
        """Greedily join consecutive pieces while they fit in the base size."""
        chunks: list[Span] = []
        current: Span | None = None
        for piece in pieces:
            if not self._fits(*piece):
                if current:
                    chunks.append(current)
                    current = None
                chunks.extend(split_further(*piece))
            elif current and self._fits(current[0], piece[1]):
                current = (current[0], piece[1])
            else:
                if current:
                    chunks.append(current)
                current = piece
        if current:
            chunks.append(current)
        return chunks

    def _with_overlap(self, spans: list[Span]) -> list[Span]:
        """Start each chunk up to ``overlap`` tokens (and ``overlap_chars`` characters)
        before its base start, at a sentence boundary when one is in reach, otherwise at a
        word boundary."""
        result: list[Span] = []
        for index, (start, end) in enumerate(spans):
            if index == 0 or self.overlap == 0:
                result.append((start, end))
                continue
            previous_start = spans[index - 1][0]
            first_token = bisect_left(self.starts, start)
            candidate = max(bisect_left(self.starts, previous_start), first_token - self.overlap)
            if candidate >= first_token:
                result.append((start, end))
                continue
            reach = max(self.starts[candidate], start - self.overlap_chars)
            result.append((self._snap(reach, start), end))
        return result

    def _snap(self, reach: int, start: int) -> int:
        region = self.text[reach:start]
        for boundary in (". ", "! ", "? ", "\n"):
            found = region.find(boundary)
            if found >= 0:
                snapped = self._skip_space(reach + found + len(boundary), start)
                if snapped < start:
                    return snapped
        index = bisect_left(self.starts, reach)
        while index < len(self.starts) and self.starts[index] < start:
            position = self.starts[index]
            if position == 0 or self.text[position - 1].isspace():
                return position
            index += 1
        return start

    def _skip_space(self, position: int, limit: int) -> int:
        while position < limit and self.text[position].isspace():
            position += 1
        return position

    def _split_by_tokens(self, start: int, end: int) -> list[Span]:
        """Last resort for text without separators: cut every ``base`` tokens, or sooner
        at the last token start within ``base_chars`` characters, or (a token longer than
        that) right at the character budget."""
        starts = self.starts
        spans: list[Span] = []
        cursor = start
        while cursor < end:
            first = bisect_left(starts, cursor)
            # A span that begins inside a cut token counts its rest as one token.
            limit = first + self.base - self._cut_token(cursor, end, first)
            stop = min(end, cursor + self.base_chars)
            if limit < len(starts) and starts[limit] > cursor:
                stop = min(stop, starts[limit])
            if stop < end:
                last = bisect_right(starts, stop) - 1
                if last >= first and starts[last] > cursor:  # cut at a token start in reach
                    stop = starts[last]
            spans.append((cursor, stop))
            cursor = stop
        return spans or [(start, end)]


def _pieces(text: str, start: int, end: int, separator: str) -> list[Span]:
    """Split [start, end) after each separator; the separator stays with the left piece."""
    pieces: list[Span] = []
    cursor = start
    while cursor < end:
        found = text.find(separator, cursor, end)
        if found < 0:
            pieces.append((cursor, end))
            break
        stop = found + len(separator)
        pieces.append((cursor, stop))
        cursor = stop
    return pieces


def _trim(text: str, start: int, end: int) -> Span:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end
