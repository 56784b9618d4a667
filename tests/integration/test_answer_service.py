"""The answer service against the real database: which question's embedding retrieval
uses, and what is left running when an answer fails early."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from domain.errors import NotFound
from domain.services.search import SearchService
from infrastructure.container import Container
from tests.integration.test_chunk_search import member


class RecordingEmbeds:
    """Wraps SearchService.embed, recording each question it embeds."""

    def __init__(self, search: SearchService) -> None:
        self.questions: list[str] = []
        self._embed = search.embed

    async def __call__(self, question: str) -> list[float]:
        self.questions.append(question)
        return await self._embed(question)


async def test_a_rewritten_follow_up_is_retrieved_with_its_own_embedding(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = container.services
    principal = await member(container)
    chat = await services.chats.create(principal, None)
    embeds = RecordingEmbeds(services.search)
    monkeypatch.setattr(services.search, "embed", embeds)

    await services.answers.ask(principal, chat.id, "What is pgvector?")
    # Stands alone: embedded once, while the question was being stored.
    assert embeds.questions == ["What is pgvector?"]

    embeds.questions.clear()
    await services.answers.ask(principal, chat.id, "How do I install it?")
    # The question as asked was embedded early, then rewritten: retrieval embeds the
    # rewritten one (with the earlier subject) and uses that.
    assert embeds.questions[0] == "How do I install it?"
    assert embeds.questions[-1].startswith("How do I install it?")
    assert "pgvector" in embeds.questions[-1]


async def test_an_answer_that_fails_early_leaves_no_embedding_running(
    container: Container,
) -> None:
    principal = await member(container)
    with pytest.raises(NotFound):
        await container.services.answers.ask(principal, uuid.uuid4(), "What is pgvector?")
    await asyncio.sleep(0)
    running = [
        task
        for task in asyncio.all_tasks()
        if not task.done() and "SearchService.embed" in repr(task.get_coro())
    ]
    assert running == []
