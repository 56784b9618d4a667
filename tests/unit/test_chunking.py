"""The chunker on real text with a simple word tokenizer (the model's tokenizer is tested
in the embedder tests); sizes, overlap, offsets and pages."""

from __future__ import annotations

import itertools
import re

import pytest

from domain.entities import ChunkDraft, Page, ParsedDocument
from domain.ingestion.chunking import (
    CHARS_PER_TOKEN,
    PAGE_SEPARATOR,
    ChunkingOptions,
    chunk_document,
)

_WORD = re.compile(r"\w+|[^\w\s]")


class WordTokenizer:
    def token_starts(self, text: str) -> list[int]:
        return [m.start() for m in _WORD.finditer(text)]


PROSE = (
    "Knowledge Foundry stores documents. It splits them into chunks! Each chunk keeps its page.\n"
    "Offsets point back into the text; they never drift.\n\n"
    "A second paragraph talks about embeddings, vectors, and search. "
    "Hybrid search fuses vector and full-text rankings.\n\n"
) * 12


def tokens(text: str) -> int:
    return len(WordTokenizer().token_starts(text))


def test_chunks_respect_size_and_keep_exact_offsets() -> None:
    document = ParsedDocument(pages=[Page(1, PROSE), Page(2, PROSE[:500])], page_count=2)
    options = ChunkingOptions(size_tokens=40, overlap_tokens=8)
    drafts = chunk_document(document, WordTokenizer(), options)
    joined = PAGE_SEPARATOR.join(page.text for page in document.pages)
    assert len(drafts) > 10
    for index, draft in enumerate(drafts):
        assert draft.ordinal == index
        assert 0 < draft.token_count <= 40
        assert draft.token_count == tokens(draft.text)
        assert joined[draft.char_start : draft.char_end] == draft.text
        assert draft.text == draft.text.strip()
    assert {d.page for d in drafts} == {1, 2}
    assert all(d.char_start >= len(PROSE) for d in drafts if d.page == 2)


def test_consecutive_chunks_overlap_but_never_exceed_it() -> None:
    document = ParsedDocument(pages=[Page(None, PROSE)], page_count=None)
    drafts = chunk_document(
        document, WordTokenizer(), ChunkingOptions(size_tokens=40, overlap_tokens=8)
    )
    overlaps = [max(0, a.char_end - b.char_start) for a, b in itertools.pairwise(drafts)]
    assert any(o > 0 for o in overlaps)
    for a, b in itertools.pairwise(drafts):
        if b.char_start < a.char_end:
            assert tokens(PROSE[b.char_start : a.char_end]) <= 8
    # Everything is covered: no text falls between chunks.
    covered: set[int] = set()
    for d in drafts:
        covered.update(range(d.char_start, d.char_end))
    assert all(PROSE[i].isspace() for i in range(len(PROSE)) if i not in covered)


def test_prefers_paragraph_then_sentence_boundaries() -> None:
    document = ParsedDocument(pages=[Page(None, PROSE)], page_count=None)
    drafts = chunk_document(
        document, WordTokenizer(), ChunkingOptions(size_tokens=60, overlap_tokens=0)
    )
    assert all(d.text.endswith((".", "!", "?")) for d in drafts)


def test_text_without_separators_is_split_by_tokens() -> None:
    text = "x" * 5 + "".join(f"w{i}" + "-" for i in range(300))
    drafts = chunk_document(
        ParsedDocument([Page(None, text)], None), WordTokenizer(), ChunkingOptions(20, 4)
    )
    assert len(drafts) > 1
    assert all(d.token_count <= 20 for d in drafts)
    assert drafts[0].char_start == 0
    assert drafts[-1].char_end == len(text)


def test_small_and_empty_pages() -> None:
    document = ParsedDocument([Page(1, "  \n "), Page(2, "Just one line.")], 2)
    drafts = chunk_document(document, WordTokenizer(), ChunkingOptions())
    assert [(d.page, d.text) for d in drafts] == [(2, "Just one line.")]


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="overlap"):
        ChunkingOptions(size_tokens=20, overlap_tokens=15)


def _assert_within_budgets(text: str, drafts: list[ChunkDraft], options: ChunkingOptions) -> None:
    """Every chunk within both budgets, at its exact offsets, and nothing left out."""
    assert drafts
    covered = 0
    for draft in drafts:
        assert len(draft.text) <= options.max_chars
        assert 0 < draft.token_count <= options.size_tokens
        assert text[draft.char_start : draft.char_end] == draft.text
        assert draft.char_start <= covered or text[covered : draft.char_start].isspace()
        covered = max(covered, draft.char_end)
    assert text[covered:].isspace() or covered == len(text)


def test_words_longer_than_the_character_budget_are_cut_into_bounded_chunks() -> None:
    """WordPiece makes one [UNK] of any word over 100 characters (the word tokenizer
    here one token of any word): counted in tokens alone, 40 such words fit one chunk."""
    words = [letter * 18_000 for letter in "abcdefghijklmnopqrstuvwxyzabcdefghijklmn"]
    text = " ".join(words)
    options = ChunkingOptions()
    drafts = chunk_document(ParsedDocument([Page(None, text)], None), WordTokenizer(), options)
    _assert_within_budgets(text, drafts, options)
    # Each word in pieces of the base budget (the overlap's share is left for the overlap,
    # which finds no word boundary within its reach here).
    base_chars = (options.size_tokens - options.overlap_tokens) * CHARS_PER_TOKEN
    assert [len(d.text) for d in drafts] == ([base_chars] * 7 + [18_000 - 7 * base_chars]) * 40


def test_text_without_any_separator_is_cut_by_characters() -> None:
    text = "x" * 50_000  # one token for the word tokenizer (one [UNK] for WordPiece)
    options = ChunkingOptions(size_tokens=64, overlap_tokens=8)
    drafts = chunk_document(ParsedDocument([Page(None, text)], None), WordTokenizer(), options)
    _assert_within_budgets(text, drafts, options)
    assert [d.char_start for d in drafts] == list(range(0, len(text), 56 * CHARS_PER_TOKEN))
    assert all(d.token_count == 1 for d in drafts)


def test_the_overlap_stays_within_its_character_budget() -> None:
    """Long (single-token) words: eight of them are far more than eight tokens' worth of
    characters, so the overlap is cut short."""
    text = " ".join(f"{i:03d}" + "y" * 60 for i in range(400))
    options = ChunkingOptions(size_tokens=40, overlap_tokens=8)
    drafts = chunk_document(ParsedDocument([Page(None, text)], None), WordTokenizer(), options)
    _assert_within_budgets(text, drafts, options)
    overlaps = [a.char_end - b.char_start for a, b in itertools.pairwise(drafts)]
    assert any(overlap > 0 for overlap in overlaps)
    assert all(overlap <= options.overlap_chars for overlap in overlaps)
