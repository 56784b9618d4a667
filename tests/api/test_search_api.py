"""search(query, limit, documentIds) over HTTP on documents ingested by a real worker."""

from __future__ import annotations

from typing import cast

from tests.helpers import JSON, GraphQLClient
from tests.knowledge import Corpus

SEARCH = """
query Search($q: String!, $limit: Int, $ids: [ID!]) {
  search(query: $q, limit: $limit, documentIds: $ids) {
    chunkId page text score similarity vectorRank textRank
    document { id filename status }
  }
}
"""


async def hits(
    api: GraphQLClient, token: str, query: str, limit: int = 8, ids: list[str] | None = None
) -> list[JSON]:
    data = await api.data(SEARCH, {"q": query, "limit": limit, "ids": ids}, token)
    return cast(list[JSON], data["search"])


def filename(hit: JSON) -> str:
    return str(cast(JSON, hit["document"])["filename"])


async def test_hybrid_search_finds_the_passage_with_document_and_page(
    api: GraphQLClient, corpus: Corpus
) -> None:
    token = corpus.owner.access_token
    found = await hits(api, token, "Who built the Skerry Point lighthouse?", limit=3)
    assert found, "expected hits"
    best = found[0]
    assert cast(JSON, best["document"])["id"] == corpus.documents["lighthouse.md"]
    assert "Margaret Vance" in str(best["text"])
    assert cast(JSON, best["document"])["status"] == "READY"
    assert best["vectorRank"] == 1 and best["textRank"] is not None
    scores = [float(cast(float, hit["score"])) for hit in found]
    assert scores == sorted(scores, reverse=True)
    assert len(found) <= 3


async def test_full_text_alone_can_find_an_exact_term(api: GraphQLClient, corpus: Corpus) -> None:
    found = await hits(api, corpus.owner.access_token, '"citric acid"')
    assert filename(found[0]) == "espresso.md"
    assert found[0]["textRank"] == 1


async def test_search_is_limited_to_chosen_documents(api: GraphQLClient, corpus: Corpus) -> None:
    payroll = corpus.documents["payroll-policy.txt"]
    found = await hits(
        api, corpus.owner.access_token, "lighthouse lamp range", ids=[payroll, "not-an-id"]
    )
    assert found and {filename(hit) for hit in found} == {"payroll-policy.txt"}
    assert await hits(api, corpus.owner.access_token, "lighthouse", ids=[]) == []


def document_ids(found: list[JSON]) -> set[str]:
    return {str(cast(JSON, hit["document"])["id"]) for hit in found}


async def test_search_never_returns_another_organisations_chunks(
    api: GraphQLClient, corpus: Corpus
) -> None:
    # Both organisations have a lighthouse.md: documents are told apart by id.
    own, rivals = set(corpus.documents.values()), set(corpus.rival_documents.values())
    rival_lighthouse = corpus.rival_documents["lighthouse.md"]
    for query in ["Tomas Reyes harbour trust", "Skerry Point lighthouse designer 1901"]:
        found = await hits(api, corpus.owner.access_token, query, limit=20)
        assert found, query  # the organisation's own lighthouse at least
        assert document_ids(found) <= own, found
        assert all("Tomas Reyes" not in str(hit["text"]) for hit in found)
    # Asking for the rival's document by id finds nothing rather than an error.
    assert await hits(api, corpus.owner.access_token, "lighthouse", ids=[rival_lighthouse]) == []
    rival = await hits(api, corpus.rival.access_token, "Who designed the lighthouse?")
    assert document_ids(rival) == rivals, rival
    assert all("Margaret Vance" not in str(hit["text"]) for hit in rival)


async def test_search_validates_its_input(api: GraphQLClient, corpus: Corpus) -> None:
    token = corpus.owner.access_token
    assert await api.error_code(SEARCH, {"q": "   "}, token) == "VALIDATION_FAILED"
    assert await api.error_code(SEARCH, {"q": "x" * 2_001}, token) == "QUESTION_TOO_LONG"
    assert await api.error_code(SEARCH, {"q": "tides", "limit": 0}, token) == "VALIDATION_FAILED"
    assert await api.error_code(SEARCH, {"q": "tides", "limit": 51}, token) == "VALIDATION_FAILED"
    ids = [f"00000000-0000-0000-0000-{i:012d}" for i in range(101)]
    assert await api.error_code(SEARCH, {"q": "tides", "ids": ids}, token) == "VALIDATION_FAILED"
    # Malformed ids match nothing but count all the same.
    junk = [f"not-an-id-{i}" for i in range(101)]
    assert await api.error_code(SEARCH, {"q": "tides", "ids": junk}, token) == "VALIDATION_FAILED"
    assert await hits(api, token, "tides", ids=junk[:100]) == []
    assert await api.error_code(SEARCH, {"q": "tides"}) == "UNAUTHENTICATED"


async def test_unicode_and_search_syntax_are_safe(api: GraphQLClient, corpus: Corpus) -> None:
    token = corpus.owner.access_token
    for query in ["Leuchtturm 灯台 🏝️ ?", "'; DROP TABLE chunks; --", '"unclosed quote', "-", "or"]:
        found = await hits(api, token, query)
        assert isinstance(found, list)
