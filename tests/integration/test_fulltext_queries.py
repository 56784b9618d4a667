"""What search sends websearch_to_tsquery, in PostgreSQL: a tsquery it can build, whatever
the question, and never one that only excludes words (it would match every chunk
without them, all ranked alike)."""

from __future__ import annotations

import random

from sqlalchemy import text

from domain.retrieval.fulltext import all_words
from infrastructure.container import Container
from tests.integration.test_chunk_search import DIMENSIONS, document_with_chunks, member, near, unit

# Pieces of questions: the syntax, the operators websearch_to_tsquery skips, runs of
# dashes (a markdown rule, a table row), stop words and words.
PIECES = [
    *("-", "--", "- ", " -", "-" * 35, "|---" * 12, "|---|"),
    *('"', " ", "  ", "\n", "!", "&", "|", "(", ")", "<", "<->", ":", "*", "?", "_"),
    *("or", "OR", "Or", "or?", "or.net", "the", "is", "what", "x", "y", "5", "alpha"),
    *("foo-bar", "the-or", "config.yaml"),
]
PARSED = text(
    "SELECT numnode(q) AS nodes, querytree(q) AS tree"
    " FROM unnest(CAST(:texts AS text[])) WITH ORDINALITY AS t (body, n),"
    " LATERAL websearch_to_tsquery('english'::regconfig, t.body) AS q"
    " ORDER BY t.n"
)


async def test_every_question_makes_a_tsquery_that_asks_for_a_word(container: Container) -> None:
    rng = random.Random(3)
    questions = [
        "".join(rng.choice(PIECES) for _ in range(rng.randint(1, 60))) for _ in range(3_000)
    ]
    texts = [all_words(question) for question in questions]
    async with container.engine.connect() as conn:
        # One statement: any text PostgreSQL cannot build a tsquery from fails it all.
        rows = (await conn.execute(PARSED, {"texts": texts})).all()
    assert len(rows) == len(questions)
    # querytree is "T" when the query has no word it requires (nothing for the index).
    only_excluding = [
        (question, body)
        for question, body, row in zip(questions, texts, rows, strict=True)
        if row.nodes > 0 and row.tree == "T"
    ]
    assert only_excluding == []
    assert sum(bool(body) for body in texts) > len(texts) // 2  # most still search text


async def test_a_query_that_only_excludes_finds_nothing_through_full_text(
    container: Container,
) -> None:
    rng = random.Random(13)
    query = unit([rng.gauss(0, 1) for _ in range(DIMENSIONS)])
    principal = await member(container)
    alpha = ["alpha tides and currents", "alpha harbour lamp"]
    beta = ["beta tides and currents", "beta harbour lamp"]
    vectors = [near(query, rng, 0.1) for _ in alpha + beta]
    await document_with_chunks(container, principal, vectors, texts=alpha + beta)

    async def found_by_text(question: str) -> list[str]:
        retrieval = await container.services.search.retrieve(
            principal, question, 10, embedding=query
        )
        assert len(retrieval.hits) == 4  # the vector path finds them all
        return sorted(hit.text for hit in retrieval.hits if hit.text_rank is not None)

    for question in ["-(alpha)", "(-alpha)", "what is -alpha", "beta or -alpha", "-alpha -lamp"]:
        assert await found_by_text(question) == [], question
    assert await found_by_text("-beta harbour") == [alpha[1]]
    assert await found_by_text("tides -(alpha)") == [beta[0]]
    assert await found_by_text("beta") == sorted(beta)
