"""Recursive, token-sized chunking that keeps pages and character offsets.

Text is split at the coarsest separator that makes pieces fit (paragraph, then
line, then sentence, then word), pieces are merged back up to the chunk size,
and consecutive chunks share up to ``overlap_tokens`` tokens. Sizes are counted
in the embedder's own tokens, so no chunk is silently truncated by the model.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from domain.entities import ChunkDraft, ParsedDocument

PAGE_SEPARATOR = "\n\n"
SEPARATORS: tuple[str, ...] = ("\n\n", "\n", ". ", "? ", "! ", "; ", ", ", " ")

Span = tuple[int, int]


class Tokenizer(Protocol):
    def token_starts(self, text: str) -> list[int]:
        """Character offset where each token of ``text`` starts (no special tokens)."""
        ...


@dataclass(frozen=True, slots=True)
class ChunkingOptions:
    size_tokens: int = 240
    overlap_tokens: int = 32

    def __post_init__(self) -> None:
        if self.size_tokens < 8 or not 0 <= self.overlap_tokens < self.size_tokens // 2:
            raise ValueError("chunk size must be >= 8 tokens and overlap < half of it")


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
        # Base chunks leave room for the overlap that is prepended afterwards.
        self.base = options.size_tokens - options.overlap_tokens

    def count(self, start: int, end: int) -> int:
        return bisect_left(self.starts, end) - bisect_left(self.starts, start)

    def spans(self) -> list[Span]:
        base = [_trim(self.text, s, e) for s, e in self._split(0, len(self.text), 0)]
        return self._with_overlap([span for span in base if span[1] > span[0]])

    def _split(self, start: int, end: int, level: int) -> list[Span]:
        if self.count(start, end) <= self.base:
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
            if self.count(*piece) > self.base:
                if current:
                    chunks.append(current)
                    current = None
                chunks.extend(split_further(*piece))
            elif current and self.count(current[0], piece[1]) <= self.base:
                current = (current[0], piece[1])
            else:
                if current:
                    chunks.append(current)
                current = piece
        if current:
            chunks.append(current)
        return chunks

    def _with_overlap(self, spans: list[Span]) -> list[Span]:
        """Start each chunk up to ``overlap`` tokens before its base start, at a sentence
        boundary when one is in reach, otherwise at a word boundary."""
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
            reach = self.starts[candidate]
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
        """Last resort for text without separators: cut every ``base`` tokens."""
        first = bisect_left(self.starts, start)
        last = bisect_left(self.starts, end)
        spans: list[Span] = []
        for index in range(first, last, self.base):
            stop = min(index + self.base, last)
            span_start = start if index == first else self.starts[index]
            span_end = self.starts[stop] if stop < last else end
            spans.append((span_start, span_end))
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
