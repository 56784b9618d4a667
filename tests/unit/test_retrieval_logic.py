"""Pure retrieval logic: rank fusion and the full-text query text."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from domain.retrieval.entities import ChunkMatch
from domain.retrieval.fulltext import MAX_TERMS, all_words, any_word
from domain.retrieval.fusion import RRF_K, reciprocal_rank_fusion
from domain.services.search import SearchService


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


def test_duplicates_within_a_list_count_once() -> None:
    a = match("a")
    fused = reciprocal_rank_fusion([a, a], [], limit=5)
    assert len(fused) == 1
    assert fused[0].score == 1 / (RRF_K + 1)


def test_a_plain_question_is_searched_with_all_then_any_of_its_words() -> None:
    assert all_words("How do I rotate the key?") == "How do I rotate the key"
    assert any_word("How do I rotate the key?") == "How or do or I or rotate or the or key"


def test_search_syntax_is_kept_as_typed() -> None:
    for query in ('"signing key" rotation', "rotate -legacy", "tides or currents"):
        assert all_words(query) == any_word(query) == query


def test_the_word_or_and_punctuation_cannot_break_the_query() -> None:
    assert any_word("black or") == all_words("black or") == "black"
    assert any_word("Or what?!") == "what"
    assert any_word("?!...") == all_words("?!...") == ""
    assert len(any_word(" ".join(["word"] * 100)).split(" or ")) == MAX_TERMS
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


async def found(
    search: RecordingSearch, query: str, candidates: int, enough: int
) -> list[ChunkMatch]:
    return await SearchService._matching(
        search, query, [], candidates=candidates, enough=enough, ids=None
    )


async def test_any_word_runs_only_when_every_word_finds_too_little() -> None:
    a, b, c = match("a"), match("b"), match("c")
    enough = RecordingSearch({"rotate key": [a, b]})
    assert await SearchService._matching(
        enough, "rotate key?", [], candidates=40, enough=2, ids=None
    ) == [a, b]
    assert enough.asked == ["rotate key"]

    short = RecordingSearch({"rotate key": [a], "rotate or key": [b, a, c]})
    assert await SearchService._matching(
        short, "rotate key?", [], candidates=40, enough=2, ids=None
    ) == [a, b, c]
    assert short.asked == ["rotate key", "rotate or key"]
    # The candidate bound holds for the merged list.
    capped = RecordingSearch({"rotate key": [a], "rotate or key": [b, c]})
    assert await SearchService._matching(
        capped, "rotate key", [], candidates=2, enough=5, ids=None
    ) == [a, b]
    # One word, or the query's own syntax: nothing broader to try.
    single = RecordingSearch({})
    assert await found(single, "rotation", 40, 2) == []
    assert single.asked == ["rotation"]
    assert await found(single, "?!", 40, 2) == []
    assert single.asked == ["rotation"]
