"""Pure retrieval logic: rank fusion and the full-text query text."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import cast

import pytest

from domain.entities import Document, DocumentStatus, Principal, Role
from domain.ingestion.ports import Embedder
from domain.ports import UnitOfWorkFactory
from domain.retrieval.entities import ChunkMatch
from domain.retrieval.fulltext import MAX_TERMS, all_words
from domain.retrieval.fusion import RRF_K, reciprocal_rank_fusion
from domain.services.search import SearchOptions, SearchService

NOW = datetime(2026, 12, 7, tzinfo=UTC)


def match(name: str, similarity: float = 0.5) -> ChunkMatch:
    return ChunkMatch(
        chunk_id=uuid.uuid5(uuid.NAMESPACE_DNS, name),
        document_id=uuid.uuid5(uuid.NAMESPACE_URL, name),
        page=None,
        text=name,
        similarity=similarity,
        rank_score=similarity,
    )


def test_a_chunk_found_by_both_paths_beats_a_chunk_first_in_one() -> None:
    a, b, c = match("a"), match("b"), match("c")
    fused = reciprocal_rank_fusion([a, b], [c, b], limit=3)
    assert [item.match.text for item in fused] == ["b", "a", "c"]
    top = fused[0]
    assert (top.vector_rank, top.text_rank) == (2, 2)
    assert top.score == 2 / (RRF_K + 2)
    assert (fused[1].vector_rank, fused[1].text_rank) == (1, None)
    assert (fused[2].vector_rank, fused[2].text_rank) == (None, 1)


def test_equal_scores_prefer_the_vector_path_and_the_limit_applies() -> None:
    a, c = match("a"), match("c")
    fused = reciprocal_rank_fusion([a], [c], limit=1)
    assert [item.match.text for item in fused] == ["a"]
    assert reciprocal_rank_fusion([a], [c], limit=0) == []


def test_mirrored_lists_tie_in_pairs_and_the_better_vector_rank_goes_first() -> None:
    chunks = [match(f"t{n}") for n in range(30)]
    fused = reciprocal_rank_fusion(chunks, chunks[::-1], limit=30)
    # Chunk n has ranks n+1 and 30-n: n and 29-n score the same.
    expected = [name for n in range(15) for name in (f"t{n}", f"t{29 - n}")]
    assert [item.match.text for item in fused] == expected
    assert [item.score for item in fused] == sorted((item.score for item in fused), reverse=True)
    assert fused[0].score == 1 / (RRF_K + 1) + 1 / (RRF_K + 30)
    assert len(reciprocal_rank_fusion(chunks, chunks[::-1], limit=7)) == 7


def test_duplicates_within_a_list_count_once() -> None:
    a = match("a")
    fused = reciprocal_rank_fusion([a, a], [], limit=5)
    assert len(fused) == 1
    assert fused[0].score == 1 / (RRF_K + 1)


def test_a_plain_question_is_searched_with_every_one_of_its_words() -> None:
    assert all_words("How do I rotate the key?") == "How do I rotate the key?"


def test_words_stay_whole_as_postgresql_indexed_them() -> None:
    # Its parser keeps config.yaml, 2.5 and a@b.io as single tokens, and combining marks
    # in their words ("दिन" is one word, not "द न").
    for query in ("Where is config.yaml?", "version 2.5", "mail a@b.io", "हर दिन", "cafe\u0301"):
        assert all_words(query) == query


def test_search_syntax_is_kept_as_typed() -> None:
    for query in ('"signing key" rotation', "rotate -legacy", "tides or currents"):
        assert all_words(query) == query


def test_a_query_that_only_excludes_searches_no_text() -> None:
    # "-foo" alone would match every chunk without foo, all ranked alike; so would an
    # alternative that only excludes, whatever the other one asks for.
    for query in ("-foo", "-foo -bar", "-(foo)", "(-foo)", "!-foo", "black or -white"):
        assert all_words(query) == "", query


def test_stop_words_are_not_what_a_query_asks_for() -> None:
    # PostgreSQL drops "what" and "is" (and a phrase of stop words), leaving !'foo'.
    for query in ("what is -foo", '"the a" -foo', "it's -foo", "___ -foo", "the or -foo"):
        assert all_words(query) == "", query
    # A hyphenated word, a host name or a path is a word of its own, never a stop word.
    assert all_words("the-or -foo") == "the-or -foo"
    assert all_words("what.is -foo") == "what.is -foo"
    assert all_words("what is -the") == ""  # asks for nothing, excludes nothing
    assert all_words('"-foo" or') == '"-foo"'  # in quotes a dash is punctuation


def test_dashes_and_operators_cannot_pile_up_into_negations() -> None:
    # To websearch_to_tsquery each of these dashes was a NOT, and more than 31 in a row
    # failed the whole statement ("tsquery stack too small").
    rule = "-" * 40
    assert all_words(rule + "x") == "x"
    assert all_words('What does "RRF" mean?\n' + rule) == 'What does "RRF" mean?'
    assert all_words('| "lamp" |' + "---|" * 20) == '"lamp"'
    assert all_words("|---|---|") == ""
    assert all_words("x" + "|-" * 40 + "y") == "x y"
    assert all_words('"x" ' + "-(" * 40 + "y") == '"x" y'
    # More than one dash, or one with a space after it, is punctuation, not a NOT.
    assert all_words("--verbose flag") == "verbose flag"
    assert all_words('"x" --verbose') == '"x" verbose'
    assert all_words('"x" - y') == '"x" y'
    assert all_words("pages 3 - 5") == "pages 3 5"


def test_the_syntax_is_written_back_one_operator_at_a_time() -> None:
    assert all_words('x -(y) (-z) "a b"') == 'x -y -z "a b"'
    assert all_words('-"a b" c or d') == '-"a b" c or d'
    assert all_words('"black" (or) white') == '"black" or white'
    assert all_words('"unclosed quote') == '"unclosed quote"'
    # A word websearch_to_tsquery would take for an OR goes in quotes.
    assert all_words('"x" --or.net y') == '"x" "or.net" y'
    # ...also before a letter outside ASCII, which ends "or" in a C-locale database.
    assert all_words('"x" orçamento') == '"x" "orçamento"'
    terms = all_words('"x" ' + " ".join(["-word"] * 100)).split(" ")
    assert len(terms) == MAX_TERMS


def test_the_word_or_and_punctuation_cannot_break_the_query() -> None:
    assert all_words("black or") == "black"
    assert all_words("black or?") == "black"
    assert all_words("Or what?!") == "what?"  # "!" is an operator PostgreSQL skips
    assert all_words("?!...") == ""
    assert len(all_words(" ".join(["word"] * 100)).split(" ")) == MAX_TERMS


class RecordingSearch:
    """A ChunkSearch whose full-text answers are scripted per query text."""

    def __init__(self, answers: dict[str, list[ChunkMatch]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def nearest(
        self, embedding: Sequence[float], limit: int, document_ids: Sequence[uuid.UUID] | None
    ) -> list[ChunkMatch]:
        return []

    async def matching(
        self,
        websearch: str,
        embedding: Sequence[float],
        limit: int,
        document_ids: Sequence[uuid.UUID] | None,
    ) -> list[ChunkMatch]:
        self.asked.append(websearch)
        return self.answers.get(websearch, [])[:limit]


async def test_full_text_asks_for_every_word_once_and_nothing_for_no_words() -> None:
    a, b = match("a"), match("b")
    search = RecordingSearch({"rotate key?": [a, b]})
    assert await SearchService._matching(search, "rotate  key?", [], candidates=40, ids=None) == [
        a,
        b,
    ]
    assert await SearchService._matching(search, "rotate key?", [], candidates=1, ids=None) == [a]
    # Nothing searchable: no query at all.
    assert await SearchService._matching(search, "?!", [], candidates=40, ids=None) == []
    assert await SearchService._matching(search, "-rotate", [], candidates=40, ids=None) == []
    assert search.asked == ["rotate key?", "rotate key?"]


class _Reader:
    """A tenant reader whose chunks were found while their document was READY, and whose
    document reads back as ``status`` (changed between the statements)."""

    def __init__(self, found: ChunkMatch, status: DocumentStatus) -> None:
        self.search = RecordingSearch({"rotate": [found]})
        self.documents = self
        self._document = Document(
            found.document_id,
            uuid.uuid4(),
            None,
            "a.txt",
            "text/plain",
            1,
            "0" * 64,
            "k",
            status,
            None,
            None,
            1,
            1,
            NOW,
            NOW,
            NOW,
        )

    async def get_many(self, ids: Sequence[uuid.UUID]) -> list[Document]:
        return [self._document] if self._document.id in ids else []

    async def __aenter__(self) -> _Reader:
        return self

    async def __aexit__(self, *_: object) -> None:
        return None


class _Readers:
    def __init__(self, reader: _Reader) -> None:
        self._reader = reader

    def reader(self, principal: Principal) -> _Reader:
        return self._reader


class _Stages:
    def stage(self, name: str, seconds: float, hits: int) -> None:
        return None


@pytest.mark.parametrize(
    ("status", "kept"),
    [(DocumentStatus.READY, 1), (DocumentStatus.DELETED, 0), (DocumentStatus.PENDING, 0)],
)
async def test_hits_of_a_document_no_longer_ready_are_left_out(
    status: DocumentStatus, kept: int
) -> None:
    service = SearchService(
        uow_factory=cast(UnitOfWorkFactory, _Readers(_Reader(match("rotate"), status))),
        embedder=cast(Embedder, None),
        observer=_Stages(),
        options=SearchOptions(),
    )
    principal = Principal(uuid.uuid4(), uuid.uuid4(), Role.VIEWER, uuid.uuid4())
    retrieval = await service.retrieve(principal, "rotate", 5, embedding=[1.0])
    assert len(retrieval.hits) == kept
