"""ask and answer limited to chosen documents (documentIds), over real HTTP and a real
graphql-transport-ws socket: the answer draws on those documents only, another
organisation's ids match nothing, the limit is search's, and the answer cache never
mixes scoped and unscoped answers."""

from __future__ import annotations

from typing import cast

from gql import Client, gql

from domain.answers.prompt import NO_ANSWER_TEXT
from tests.api.test_answer_cache import counted, lookups
from tests.api.test_answers_api import MESSAGE_FIELDS, MESSAGES, new_chat, transport
from tests.conftest import ServerThread, WorkerProcess
from tests.helpers import JSON, GraphQLClient
from tests.knowledge import LIGHTHOUSE, PAYROLL, Corpus, ingest

ASK = f"""
mutation($c: ID!, $q: String!, $ids: [ID!]) {{
  ask(chatId: $c, question: $q, documentIds: $ids) {{ {MESSAGE_FIELDS} }}
}}
"""
ANSWER = f"""
subscription($c: ID!, $q: String!, $ids: [ID!]) {{
  answer(chatId: $c, question: $q, documentIds: $ids) {{
    __typename
    ... on AnswerSources {{ sources {{ index document {{ id filename }} }} }}
    ... on AnswerToken {{ text }}
    ... on AnswerDone {{ message {{ {MESSAGE_FIELDS} }} }}
    ... on AnswerError {{ code errorMessage: message }}
  }}
}}
"""
SEARCH = "query($q: String!, $ids: [ID!]) { search(query: $q, documentIds: $ids) { score } }"
QUESTION = "Who built the Skerry Point lighthouse?"


async def ask(
    api: GraphQLClient, token: str, chat_id: str, question: str, ids: list[str] | None
) -> JSON:
    data = await api.data(ASK, {"c": chat_id, "q": question, "ids": ids}, token)
    return cast(JSON, data["ask"])


async def stream(
    server: ServerThread, token: str, chat_id: str, question: str, ids: list[str] | None
) -> list[JSON]:
    """Every event of one answer subscription, over a graphql-transport-ws socket."""
    request = gql(ANSWER)
    request.variable_values = {"c": chat_id, "q": question, "ids": ids}
    events: list[JSON] = []
    async with Client(transport=transport(server, token)) as session:
        async for result in session.subscribe(request):
            events.append(cast(JSON, result["answer"]))
    return events


def cited_documents(message: JSON) -> set[str]:
    return {
        str(cast(JSON, source["document"])["id"]) for source in cast(list[JSON], message["sources"])
    }


def streamed_message(events: list[JSON]) -> JSON:
    """The stored message of a completed answer, checked against what was streamed."""
    kinds = [str(event["__typename"]) for event in events]
    assert kinds[0] == "AnswerSources" and kinds[-1] == "AnswerDone", events
    done = cast(JSON, events[-1]["message"])
    text = "".join(str(event["text"]) for event in events if event["__typename"] == "AnswerToken")
    assert text == done["content"]
    sent = cast(list[JSON], events[0]["sources"])
    assert [s["document"] for s in sent] == [
        s["document"] for s in cast(list[JSON], done["sources"])
    ]
    return done


def says_not_covered(message: JSON) -> None:
    assert message["content"] == NO_ANSWER_TEXT, message
    assert message["sources"] == [] and message["model"] == "none"


async def test_an_answer_scoped_to_other_documents_never_draws_on_the_one_that_knows(
    server: ServerThread, api: GraphQLClient, corpus: Corpus
) -> None:
    token = corpus.owner.access_token
    lighthouse = corpus.documents["lighthouse.md"]
    payroll = corpus.documents["payroll-policy.txt"]

    # The whole organisation: the lighthouse document answers.
    whole = await ask(api, token, await new_chat(api, token), QUESTION, None)
    assert "Margaret Vance" in str(whole["content"]) and lighthouse in cited_documents(whole)

    # Scoped to the payroll policy, which says nothing about it: the answer says so.
    for message in [
        await ask(api, token, await new_chat(api, token), QUESTION, [payroll, "not-an-id"]),
        streamed_message(
            await stream(server, token, await new_chat(api, token), QUESTION, [payroll])
        ),
    ]:
        assert lighthouse not in cited_documents(message)
        says_not_covered(message)

    # Scoped to the lighthouse document: it alone is cited, whatever else would match.
    scoped = await ask(api, token, await new_chat(api, token), QUESTION, [lighthouse])
    assert "Margaret Vance" in str(scoped["content"])
    assert cited_documents(scoped) == {lighthouse}
    streamed = streamed_message(
        await stream(
            server, token, await new_chat(api, token), "When are employees paid?", [lighthouse]
        )
    )
    assert "last working day" not in str(streamed["content"])
    assert cited_documents(streamed) <= {lighthouse}

    # An empty list means no documents, as for search.
    says_not_covered(await ask(api, token, await new_chat(api, token), QUESTION, []))


async def test_another_organisations_document_as_the_scope_retrieves_nothing(
    server: ServerThread, api: GraphQLClient, corpus: Corpus
) -> None:
    token = corpus.owner.access_token
    rival_lighthouse = corpus.rival_documents["lighthouse.md"]
    question = "Who designed the Skerry Point lighthouse, according to the harbour trust?"
    message = await ask(api, token, await new_chat(api, token), question, [rival_lighthouse])
    says_not_covered(message)
    events = await stream(server, token, await new_chat(api, token), question, [rival_lighthouse])
    says_not_covered(streamed_message(events))
    assert events[0]["sources"] == []
    assert all("Reyes" not in str(event) for event in events)


async def test_too_many_document_ids_are_refused_as_search_refuses_them(
    server: ServerThread, api: GraphQLClient, corpus: Corpus
) -> None:
    token = corpus.owner.access_token
    ids = [f"00000000-0000-0000-0000-{i:012d}" for i in range(101)]
    code = await api.error_code(SEARCH, {"q": QUESTION, "ids": ids}, token)
    assert code == "VALIDATION_FAILED"

    chat_id = await new_chat(api, token)
    assert await api.error_code(ASK, {"c": chat_id, "q": QUESTION, "ids": ids}, token) == code
    events = await stream(server, token, chat_id, QUESTION, ids)
    assert [(event["__typename"], event["code"]) for event in events] == [("AnswerError", code)]
    # Refused before the question was stored.
    chat = cast(JSON, (await api.data(MESSAGES, {"id": chat_id}, token))["chat"])
    assert cast(JSON, chat["messages"])["edges"] == []
    # As many as search takes are fine.
    assert (await ask(api, token, chat_id, QUESTION, ids[:100]))["content"] == NO_ANSWER_TEXT


async def test_the_answer_cache_never_mixes_scoped_and_unscoped_answers(
    cached_server: ServerThread, worker: WorkerProcess, cached_api: GraphQLClient
) -> None:
    api, server = cached_api, cached_server
    owner = await api.sign_up()
    token = owner.access_token
    files = [
        ("lighthouse.md", LIGHTHOUSE.encode(), "text/markdown"),
        ("payroll-policy.txt", PAYROLL.encode(), "text/plain"),
    ]
    documents = await ingest(api.http, api, token, files)
    lighthouse, payroll = documents["lighthouse.md"], documents["payroll-policy.txt"]

    # An unscoped answer, cached…
    before = lookups()
    whole = await ask(api, token, await new_chat(api, token), QUESTION, None)
    counted(before, miss=1)
    assert lighthouse in cited_documents(whole)
    # …is served to neither scope: they are answered afresh from their documents.
    before = lookups()
    elsewhere = await ask(api, token, await new_chat(api, token), QUESTION, [payroll])
    says_not_covered(elsewhere)
    events = await stream(server, token, await new_chat(api, token), QUESTION, [lighthouse])
    scoped = streamed_message(events)
    assert cited_documents(scoped) == {lighthouse} and cast(int, scoped["promptTokens"]) > 0
    counted(before)  # not looked up
    # Still there for the unscoped question.
    before = lookups()
    again = await ask(api, token, await new_chat(api, token), QUESTION, None)
    counted(before, exact=1)
    assert again["content"] == whole["content"]

    # A scoped answer is never stored: the unscoped question asked after it is a miss
    # and draws on the whole organisation.
    question = "How far is the Skerry Point lamp visible?"
    before = lookups()
    says_not_covered(await ask(api, token, await new_chat(api, token), question, [payroll]))
    counted(before)
    before = lookups()
    events = await stream(server, token, await new_chat(api, token), question, None)
    counted(before, miss=1)
    fresh = streamed_message(events)
    assert "22 nautical miles" in str(fresh["content"]) and lighthouse in cited_documents(fresh)
