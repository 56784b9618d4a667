"""ask and the answer subscription, over real HTTP and a real graphql-transport-ws socket."""

from __future__ import annotations

import re
from typing import cast

from gql import Client, gql
from gql.transport.websockets import WebsocketsTransport

from domain.answers.prompt import NO_ANSWER_TEXT
from tests.conftest import ServerThread
from tests.helpers import JSON, GraphQLClient
from tests.knowledge import ESPRESSO, LIGHTHOUSE, PAYROLL, RIVAL_LIGHTHOUSE, Corpus

CREATE = "mutation { createChat { id } }"
MESSAGE_FIELDS = """
  id role content degraded latencyMs model promptTokens completionTokens
  sources { index page snippet score chunkId document { id filename } }
"""
ASK = f"mutation($c: ID!, $q: String!) {{ ask(chatId: $c, question: $q) {{ {MESSAGE_FIELDS} }} }}"
ANSWER = f"""
subscription($c: ID!, $q: String!) {{
  answer(chatId: $c, question: $q) {{
    __typename
    ... on AnswerSources {{ sources {{ index snippet score document {{ id filename }} }} }}
    ... on AnswerToken {{ text }}
    ... on AnswerDone {{ message {{ {MESSAGE_FIELDS} }} }}
    ... on AnswerError {{ code errorMessage: message }}
  }}
}}
"""
MESSAGES = """
query($id: ID!) { chat(id: $id) { messages { edges { node { role content sources { index } } } } } }
"""
# AnswerDone.message (a Message) and AnswerError.message (a String) clash in one
# selection set, as GraphQL requires; clients alias one of them (see the README).
CITATION = re.compile(r"\[(\d+)\]")


def ws_url(server: ServerThread) -> str:
    return server.base_url.replace("http://", "ws://") + "/graphql"


def transport(server: ServerThread, token: str) -> WebsocketsTransport:
    return WebsocketsTransport(
        url=ws_url(server),
        init_payload={"authorization": f"Bearer {token}"},
        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
    )


async def events_of(server: ServerThread, token: str, chat_id: str, question: str) -> list[JSON]:
    """Every event of one answer subscription, over a graphql-transport-ws socket."""
    request = gql(ANSWER)
    request.variable_values = {"c": chat_id, "q": question}
    events: list[JSON] = []
    async with Client(transport=transport(server, token)) as session:
        async for result in session.subscribe(request):
            events.append(cast(JSON, result["answer"]))
    return events


async def new_chat(api: GraphQLClient, token: str) -> str:
    return str(cast(JSON, (await api.data(CREATE, None, token))["createChat"])["id"])


async def ask(api: GraphQLClient, token: str, chat_id: str, question: str) -> JSON:
    return cast(JSON, (await api.data(ASK, {"c": chat_id, "q": question}, token))["ask"])


async def stream(server: ServerThread, token: str, chat_id: str, question: str) -> list[JSON]:
    events: list[JSON] = []
    request = gql(ANSWER)
    request.variable_values = {"c": chat_id, "q": question}
    async with Client(transport=transport(server, token)) as session:
        async for result in session.subscribe(request):
            events.append(cast(JSON, result["answer"]))
    return events


def flat(text: str) -> str:
    return " ".join(text.split())


def assert_quotes_sources(content: str, texts: list[str]) -> None:
    """Every quoted sentence appears verbatim (whitespace aside) in one of the texts."""
    corpus = [flat(text) for text in texts]
    for part in CITATION.split(content)[0::2]:
        sentence = part.strip()
        if sentence:
            assert any(sentence in text for text in corpus), sentence


async def test_ask_returns_a_grounded_cited_answer(api: GraphQLClient, corpus: Corpus) -> None:
    token = corpus.owner.access_token
    chat_id = await new_chat(api, token)
    message = await ask(api, token, chat_id, "Who built the Skerry Point lighthouse?")
    content = str(message["content"])
    assert "Margaret Vance" in content
    assert "#" not in content  # the document's heading is no answer sentence
    sources = cast(list[JSON], message["sources"])
    assert sources and cast(JSON, sources[0]["document"])["filename"] == "lighthouse.md"
    cited = {int(n) for n in CITATION.findall(content)}
    assert cited and cited <= {int(cast(int, s["index"])) for s in sources}
    assert_quotes_sources(content, [LIGHTHOUSE, PAYROLL, ESPRESSO])
    assert message["role"] == "ASSISTANT" and message["degraded"] is False
    assert message["model"] == "extractive"
    assert cast(int, message["latencyMs"]) >= 0
    assert cast(int, message["completionTokens"]) > 0
    assert cast(int, message["promptTokens"]) > cast(int, message["completionTokens"])


async def test_answer_streams_sources_tokens_then_the_stored_message(
    server: ServerThread, api: GraphQLClient, corpus: Corpus
) -> None:
    token = corpus.owner.access_token
    chat_id = await new_chat(api, token)
    events = await stream(server, token, chat_id, "When are employees paid?")

    kinds = [str(event["__typename"]) for event in events]
    assert kinds[0] == "AnswerSources" and kinds[-1] == "AnswerDone"
    assert set(kinds[1:-1]) == {"AnswerToken"} and len(kinds) - 2 >= 2
    streamed = "".join(str(event["text"]) for event in events[1:-1])
    done = cast(JSON, events[-1]["message"])
    assert done["content"] == streamed
    assert "last working day of each month" in streamed
    sources = cast(list[JSON], events[0]["sources"])
    assert [s["index"] for s in sources] == list(range(1, len(sources) + 1))
    assert cast(JSON, sources[0]["document"])["filename"] == "payroll-policy.txt"
    cited = {int(n) for n in CITATION.findall(streamed)}
    assert cited and cited <= {int(cast(int, s["index"])) for s in sources}
    assert [s["index"] for s in cast(list[JSON], done["sources"])] == [s["index"] for s in sources]

    stored = cast(JSON, (await api.data(MESSAGES, {"id": chat_id}, token))["chat"])
    edges = cast(list[JSON], cast(JSON, stored["messages"])["edges"])
    nodes = [cast(JSON, edge["node"]) for edge in edges]
    assert [(n["role"], n["content"]) for n in nodes] == [
        ("USER", "When are employees paid?"),
        ("ASSISTANT", streamed),
    ]


async def test_a_follow_up_is_understood_with_the_chat_history(
    api: GraphQLClient, corpus: Corpus
) -> None:
    token = corpus.owner.access_token
    chat_id = await new_chat(api, token)
    await ask(api, token, chat_id, "Tell me about the Skerry Point lighthouse.")
    follow_up = await ask(api, token, chat_id, "How far is its lamp visible?")
    assert "22 nautical miles" in str(follow_up["content"])


async def test_a_short_new_question_in_a_chat_is_not_pulled_back_to_the_last_subject(
    api: GraphQLClient, corpus: Corpus
) -> None:
    """Short, but a subject of its own: offline, the lighthouse question's words are not
    added to it, so it is answered from the payroll policy as in a new chat."""
    token = corpus.owner.access_token
    chat_id = await new_chat(api, token)
    await ask(api, token, chat_id, "Who built the Skerry Point lighthouse?")
    answer = await ask(api, token, chat_id, "When are employees paid?")
    assert "last working day" in str(answer["content"])
    assert "lighthouse" not in str(answer["content"]).lower()
    sources = cast(list[JSON], answer["sources"])
    assert cast(JSON, sources[0]["document"])["filename"] != "lighthouse.md"


async def test_a_question_the_documents_cannot_answer_says_so_without_sources(
    server: ServerThread, api: GraphQLClient, corpus: Corpus
) -> None:
    token = corpus.owner.access_token
    chat_id = await new_chat(api, token)
    message = await ask(api, token, chat_id, "What is the boiling point of liquid nitrogen?")
    assert message["content"] == NO_ANSWER_TEXT
    assert message["sources"] == []
    events = await stream(server, token, chat_id, "Which team won the 1966 football World Cup?")
    assert events[0] == {"__typename": "AnswerSources", "sources": []}
    assert "".join(str(e["text"]) for e in events[1:-1]) == NO_ANSWER_TEXT


async def test_answers_never_use_another_organisations_documents(
    server: ServerThread, api: GraphQLClient, corpus: Corpus
) -> None:
    question = "Who built the Skerry Point lighthouse and when was it first lit?"
    owner_chat = await new_chat(api, corpus.owner.access_token)
    owner = await ask(api, corpus.owner.access_token, owner_chat, question)
    rival_chat = await new_chat(api, corpus.rival.access_token)
    rival_events = await stream(server, corpus.rival.access_token, rival_chat, question)
    rival = cast(JSON, rival_events[-1]["message"])

    assert "Margaret Vance" in str(owner["content"])
    assert "Tomas Reyes" not in str(owner["content"])
    assert "Tomas Reyes" in str(rival["content"])
    assert "Margaret Vance" not in str(rival["content"])
    assert_quotes_sources(str(rival["content"]), [RIVAL_LIGHTHOUSE])
    rival_ids = set(corpus.rival_documents.values())
    for message, allowed in ((owner, set(corpus.documents.values())), (rival, rival_ids)):
        for source in cast(list[JSON], message["sources"]):
            assert cast(JSON, source["document"])["id"] in allowed
    # And neither can stream into the other's chat.
    events = await stream(server, corpus.rival.access_token, owner_chat, "What did they ask?")
    assert events == [
        {"__typename": "AnswerError", "code": "NOT_FOUND", "errorMessage": "No such chat."}
    ]


async def test_bad_questions_get_codes(
    server: ServerThread, api: GraphQLClient, corpus: Corpus
) -> None:
    token = corpus.owner.access_token
    chat_id = await new_chat(api, token)
    for question, code in [("", "VALIDATION_FAILED"), ("  \n ", "VALIDATION_FAILED")]:
        assert await api.error_code(ASK, {"c": chat_id, "q": question}, token) == code
        events = await stream(server, token, chat_id, question)
        assert [(e["__typename"], e["code"]) for e in events] == [("AnswerError", code)]
    long_question = "Why " + "really " * 400 + "?"
    assert await api.error_code(ASK, {"c": chat_id, "q": long_question}, token) == (
        "QUESTION_TOO_LONG"
    )
    events = await stream(server, token, chat_id, long_question)
    assert events[0]["code"] == "QUESTION_TOO_LONG"
    assert await api.error_code(ASK, {"c": "nope", "q": "hi"}, token) == "NOT_FOUND"
    # None of those left a message behind.
    stored = cast(JSON, (await api.data(MESSAGES, {"id": chat_id}, token))["chat"])
    assert cast(JSON, stored["messages"])["edges"] == []


async def test_unicode_questions_are_answered(api: GraphQLClient, corpus: Corpus) -> None:
    token = corpus.owner.access_token
    chat_id = await new_chat(api, token)
    message = await ask(api, token, chat_id, "Wie hoch ist der Turm des Leuchtturms? 🗼 灯台")
    assert isinstance(message["content"], str) and message["content"]
    stored = cast(JSON, (await api.data(MESSAGES, {"id": chat_id}, token))["chat"])
    first = cast(JSON, cast(list[JSON], cast(JSON, stored["messages"])["edges"])[0]["node"])
    assert first["content"] == "Wie hoch ist der Turm des Leuchtturms? 🗼 灯台"
