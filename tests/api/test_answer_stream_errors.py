"""An answer stream that fails with a bug still ends as the contract says: AnswerError."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from uuid import UUID

import pytest

from domain.answers.events import AnswerEvent
from domain.entities import Principal
from domain.services.answers import AnswerService
from tests.api.test_answers_api import new_chat, stream
from tests.conftest import ServerThread
from tests.helpers import GraphQLClient
from tests.knowledge import Corpus


async def test_an_unexpected_failure_mid_answer_ends_with_an_internal_answer_error(
    server: ServerThread, api: GraphQLClient, corpus: Corpus, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = AnswerService.stream

    def failing(
        self: AnswerService,
        principal: Principal,
        chat_id: UUID,
        question: str,
        document_ids: Sequence[UUID] | None = None,
    ) -> AsyncGenerator[AnswerEvent, None]:
        async def events() -> AsyncGenerator[AnswerEvent, None]:
            answering = original(self, principal, chat_id, question, document_ids)
            async with aclosing(answering) as answer:
                async for event in answer:
                    yield event
                    raise RuntimeError("a bug after the sources")

        return events()

    monkeypatch.setattr(AnswerService, "stream", failing)
    token = corpus.owner.access_token
    chat_id = await new_chat(api, token)

    events = await stream(server, token, chat_id, "Who built the Skerry Point lighthouse?")

    assert [event["__typename"] for event in events] == ["AnswerSources", "AnswerError"]
    assert events[-1]["code"] == "INTERNAL"
    assert "a bug" not in str(events[-1]["errorMessage"])  # details stay in the logs
    assert str(events[-1]["errorMessage"]).startswith("Unexpected error (request ")
