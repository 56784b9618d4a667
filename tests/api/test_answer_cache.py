"""The answer cache through the API: exact and semantic hits are streamed like fresh
answers and saved in the chat; any document change, and any other organisation, misses;
a follow-up rewritten with its chat's history never enters or leaves the cache."""

from __future__ import annotations

from typing import cast

from domain.answers.condense import condense_locally
from domain.answers.ports import Turn
from domain.chats.entities import MessageRole
from infrastructure.observability.answer_metrics import ANSWER_CACHE
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


async def test_a_follow_up_rewritten_with_its_chat_history_is_never_shared(
    cached_server: ServerThread, worker: WorkerProcess, cached_api: GraphQLClient
) -> None:
    """The rewrite of a follow-up carries words of the asker's own earlier messages
    (whatever Gemini restates from them): keyed by it, the answer reached colleagues
    typing the same words."""
    api, http = cached_api, cached_api.http
    asker = await api.sign_up()
    joining = await api.sign_up()
    await api.add_member(asker, joining.email)
    colleague = (await api.log_in(joining.email, asker.organization_id)).access_token
    token = asker.access_token
    await ingest(http, api, token, [("lighthouse.md", LIGHTHOUSE.encode(), "text/markdown")])

    chat_id = await new_chat(api, token)
    first = await ask(api, token, chat_id, QUESTION)
    follow_up = "When was it first lit?"
    before = lookups()
    await ask(api, token, chat_id, follow_up)
    counted(before)  # not looked up…
    history = [Turn(MessageRole.USER, QUESTION), Turn(MessageRole.ASSISTANT, str(first["content"]))]
    standalone = condense_locally(history, follow_up)
    assert standalone != follow_up and "lighthouse" in standalone

    # …nor stored: the colleague typing the rewrite word for word gets a fresh answer.
    before = lookups()
    theirs = await ask(api, colleague, await new_chat(api, colleague), standalone)
    counted(before, miss=1)
    assert cast(int, theirs["promptTokens"]) > 0  # a replayed answer reads no tokens
    # Questions that stand alone as typed are shared as before: the asker's first one,
    # and the colleague's own.
    before = lookups()
    shared = await ask(api, colleague, await new_chat(api, colleague), QUESTION)
    counted(before, exact=1)
    assert shared["content"] == first["content"] and shared["promptTokens"] == 0
    before = lookups()
    await ask(api, token, await new_chat(api, token), standalone)
    counted(before, exact=1)
