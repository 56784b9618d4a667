"""Runs of dashes and tsquery operators in a question (a markdown rule or table row, a
pasted ``--flag``) get an answer over HTTP, where PostgreSQL's websearch_to_tsquery
failed on them ("tsquery stack too small") and the client got INTERNAL."""

from __future__ import annotations

from tests.api.test_answers_api import ask, new_chat
from tests.api.test_search_api import filename, hits
from tests.helpers import GraphQLClient
from tests.knowledge import Corpus

RULE = "-" * 40


async def test_a_run_of_dashes_gets_an_answer(api: GraphQLClient, corpus: Corpus) -> None:
    token = corpus.owner.access_token
    for query in [
        RULE + "x",  # no syntax: plain words
        'What does "RRF" mean?\n' + RULE,  # a quote: the syntax is kept
        '| "lamp" |' + "---|" * 20,  # a markdown table row
        "x" + "|-" * 40 + "y",
    ]:
        assert isinstance(await hits(api, token, query), list), query
    # ask goes through the same retrieval.
    message = await ask(api, token, await new_chat(api, token), 'What does "RRF" mean?\n' + RULE)
    assert message["role"] == "ASSISTANT"


async def test_the_words_around_the_dashes_are_still_searched_in_full_text(
    api: GraphQLClient, corpus: Corpus
) -> None:
    token = corpus.owner.access_token
    for query in [RULE + "lighthouse", 'Who built the "Skerry Point" lighthouse?\n' + RULE]:
        found = await hits(api, token, query)
        assert found, query
        best = found[0]
        assert filename(best) == "lighthouse.md"
        assert best["textRank"] is not None, query
