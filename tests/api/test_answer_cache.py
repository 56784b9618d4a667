"""The answer cache through the API: exact and semantic hits are streamed like fresh
answers and saved in the chat; any document change, and any other organisation, misses."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import cast

import httpx
import pytest

from infrastructure.container import BackendUrls
from infrastructure.observability.answer_metrics import ANSWER_CACHE
from infrastructure.settings import Settings
from tests.api.test_answers_api import MESSAGES, ask, events_of, new_chat
from tests.conftest import ServerThread, WorkerProcess
from tests.helpers import JSON, GraphQLClient
from tests.knowledge import ESPRESSO, LIGHTHOUSE, Corpus, ingest

QUESTION = "Who built the Skerry Point lighthouse?"
SAME_QUESTION = "  who built the skerry point LIGHTHOUSE "
# Cosine 0.99 to QUESTION with the local model; "How tall is…" is 0.80.
PARAPHRASE = "Who was it that built the Skerry Point lighthouse?"
OTHER_QUESTION = "How tall is the Skerry Point lighthouse?"
DELETE = "mutation($id: ID!) { deleteDocument(id: $id) }"


def lookups() -> dict[str, float]:
    return {
        result: ANSWER_CACHE.labels(result)._value.get() for result in ("exact", "semantic", "miss")
    }


def counted(before: dict[str, float], **expected: int) -> None:
    after = lookups()
    assert {key: after[key] - before[key] for key in after} == {
        key: expected.get(key, 0) for key in after
    }


@pytest.fixture(scope="module")
def cached_server(settings: Settings, urls: BackendUrls) -> Iterator[ServerThread]:
    server = ServerThread(settings.model_copy(update={"answer_cache_enabled": True}), urls)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def cached_api(cached_server: ServerThread) -> AsyncIterator[GraphQLClient]:
    async with httpx.AsyncClient(base_url=cached_server.base_url, timeout=60) as http:
        yield GraphQLClient(http)


async def test_repeated_and_similar_questions_are_answered_from_the_cache(
    cached_server: ServerThread, worker: WorkerProcess, cached_api: GraphQLClient
) -> None:
    api, http, server = cached_api, cached_api.http, cached_server
    owner = await api.sign_up()
    token = owner.access_token
    await ingest(http, api, token, [("lighthouse.md", LIGHTHOUSE.encode(), "text/markdown")])

    before = lookups()
    first = await ask(api, token, await new_chat(api, token), QUESTION)
    counted(before, miss=1)
    assert "Margaret Vance" in str(first["content"])

    # The same question, written differently, in another chat: streamed from the cache.
    before = lookups()
    chat_id = await new_chat(api, token)
    events = await events_of(server, token, chat_id, SAME_QUESTION)
    counted(before, exact=1)
    kinds = [event["__typename"] for event in events]
    assert kinds[0] == "AnswerSources" and kinds[-1] == "AnswerDone"
    assert kinds.count("AnswerToken") >= 2
    text = "".join(str(event["text"]) for event in events if event["__typename"] == "AnswerToken")
    done = cast(JSON, events[-1]["message"])
    assert text == done["content"] == first["content"]
    assert done["sources"] == first["sources"]
    assert done["degraded"] is False
    # Saved in the chat like any answer.
    chat = cast(JSON, (await api.data(MESSAGES, {"id": chat_id}, token))["chat"])
    edges = cast(list[JSON], cast(JSON, chat["messages"])["edges"])
    nodes = [cast(JSON, edge["node"]) for edge in edges]
    assert [node["role"] for node in nodes] == ["USER", "ASSISTANT"]
    assert nodes[0]["content"] == SAME_QUESTION.strip()
    assert nodes[1]["content"] == first["content"]

    before = lookups()
    similar = await ask(api, token, await new_chat(api, token), PARAPHRASE)
    counted(before, semantic=1)
    assert similar["content"] == first["content"]

    before = lookups()
    await ask(api, token, await new_chat(api, token), OTHER_QUESTION)
    counted(before, miss=1)

    # A new document changes the corpus: the next answer is a fresh one.
    added = await ingest(http, api, token, [("espresso.md", ESPRESSO.encode(), "text/markdown")])
    before = lookups()
    await ask(api, token, await new_chat(api, token), QUESTION)
    counted(before, miss=1)
    before = lookups()
    await ask(api, token, await new_chat(api, token), QUESTION)
    counted(before, exact=1)

    # So does deleting one.
    assert (await api.data(DELETE, {"id": added["espresso.md"]}, token))["deleteDocument"] is True
    before = lookups()
    await ask(api, token, await new_chat(api, token), QUESTION)
    counted(before, miss=1)


async def test_cached_answers_never_cross_organisations(
    cached_api: GraphQLClient, corpus: Corpus
) -> None:
    api = cached_api
    owner, rival = corpus.owner.access_token, corpus.rival.access_token
    question = "Tell me who built the lighthouse on Skerry Point."  # asked nowhere else
    own = await ask(api, owner, await new_chat(api, owner), question)
    before = lookups()
    await ask(api, owner, await new_chat(api, owner), question)
    counted(before, exact=1)  # the owner's answer is in the cache…
    before = lookups()
    theirs = await ask(api, rival, await new_chat(api, rival), question)
    # …and the same text from the other organisation is not an exact hit on it (the
    # rival's own earlier lighthouse questions may still be semantic hits).
    assert lookups()["exact"] == before["exact"]
    assert "Vance" in str(own["content"]) and "Vance" not in str(theirs["content"])
    assert "Reyes" in str(theirs["content"])
    rival_documents = set(corpus.rival_documents.values())
    for source in cast(list[JSON], theirs["sources"]):
        assert cast(JSON, source["document"])["id"] in rival_documents
