"""The answer service against the real database: which question's embedding retrieval
uses, what is left running when an answer fails early, and where an answer lands among
the questions asked meanwhile."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from domain.answers.ports import AnswerGenerator, AnswerRequest, GenerationEvent, Turn
from domain.chats.entities import MessageRole
from domain.errors import NotFound
from domain.ports import Clock
from domain.services.answers import AnswerOptions, AnswerService
from domain.services.cursors import encode_cursor
from domain.services.search import SearchService
from infrastructure.answers.factory import build_answerers
from infrastructure.container import Container
from infrastructure.observability.answer_metrics import PrometheusAnswerObserver
from tests.integration.test_chat_turns import message
from tests.integration.test_chunk_search import member
from tests.integration.test_membership_races import after_waiting


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


class TickingClock:
    """A millisecond later at every reading: times follow the order they were read in."""

    def __init__(self) -> None:
        self._next = datetime.now(UTC)

    def now(self) -> datetime:
        self._next += timedelta(milliseconds=1)
        return self._next


class HeldOnceTheQuestionIsStored:
    """The configured answerer, holding each answer after its question is committed
    (condensing comes next) until :attr:`release` is set."""

    def __init__(self, inner: AnswerGenerator) -> None:
        self.name = inner.name
        self._inner = inner
        self.question_stored = asyncio.Event()
        self.release = asyncio.Event()

    def stream(self, request: AnswerRequest) -> AsyncGenerator[GenerationEvent, None]:
        return self._inner.stream(request)

    async def condense(self, history: Sequence[Turn], question: str) -> str:
        self.question_stored.set()
        await self.release.wait()
        return await self._inner.condense(history, question)


def held_answers(
    container: Container, clock: Clock
) -> tuple[AnswerService, HeldOnceTheQuestionIsStored]:
    """The container's answer service, but on ``clock`` and held after each question."""
    generator, _ = build_answerers(container.settings, container.embedder)
    held = HeldOnceTheQuestionIsStored(generator)
    answers = AnswerService(
        uow_factory=container.uow_factory,
        search=container.services.search,
        generator=held,
        fallback=None,
        observer=PrometheusAnswerObserver(),
        clock=clock,
        options=AnswerOptions(),
    )
    return answers, held


async def test_an_answer_is_timed_after_a_question_stored_while_it_was_written(
    container: Container,
) -> None:
    """A1 is being written while Q2 of the same chat is stored: a client that paged up
    to Q2 (its cursor) must still get A1 on its next page, so A1 is timed after Q2."""
    principal = await member(container)
    chat = await container.services.chats.create(principal, None)
    clock = TickingClock()
    answers, held = held_answers(container, clock)
    answering = asyncio.create_task(answers.ask(principal, chat.id, "What is pgvector?"))
    await held.question_stored.wait()

    # Q2 arrives: its turn holds the chat (as the question path does) while A1 is written.
    async with container.uow_factory.chat_turn(principal) as turn:
        assert await turn.lock_chat(chat.id) is not None
        held.release.set()
        waiting = await after_waiting(turn.connection(), answering)  # A1 waits for Q2
        second = message(chat, MessageRole.USER, "And pgvecto.rs?", created_at=clock.now())
        assert await turn.append(second) is not None
        await turn.commit()
    answer = (await waiting).message

    assert answer.created_at > second.created_at
    page = await container.services.chats.messages(
        principal, [chat.id], 50, encode_cursor(second.created_at, second.id)
    )
    assert [item.id for item in page[chat.id].items] == [answer.id]


async def test_an_answer_to_a_chat_deleted_meanwhile_is_not_found(container: Container) -> None:
    principal = await member(container)
    chat = await container.services.chats.create(principal, None)
    answers, held = held_answers(container, container.clock)
    answering = asyncio.create_task(answers.ask(principal, chat.id, "What is pgvector?"))
    await held.question_stored.wait()
    assert await container.services.chats.delete(principal, chat.id)
    held.release.set()
    with pytest.raises(NotFound, match="deleted while the answer"):
        await answering


class BackwardsClock:
    """A minute earlier at every reading: a clock stepped back, or replicas' clocks
    that disagree, between one message of a chat and the next."""

    def __init__(self) -> None:
        self._next = datetime.now(UTC)

    def now(self) -> datetime:
        self._next -= timedelta(minutes=1)
        return self._next


async def test_messages_keep_the_order_they_were_stored_in_when_the_clock_goes_back(
    container: Container,
) -> None:
    principal = await member(container)
    chat = await container.services.chats.create(principal, None)
    generator, _ = build_answerers(container.settings, container.embedder)
    answers = AnswerService(
        uow_factory=container.uow_factory,
        search=container.services.search,
        generator=generator,
        fallback=None,
        observer=PrometheusAnswerObserver(),
        clock=BackwardsClock(),
        options=AnswerOptions(),
    )
    first = (await answers.ask(principal, chat.id, "What is pgvector?")).message
    second = (await answers.ask(principal, chat.id, "How do I install pgvector?")).message

    page = (await container.services.chats.messages(principal, [chat.id], 50, None))[chat.id]
    assert [(item.role, item.content) for item in page.items] == [
        (MessageRole.USER, "What is pgvector?"),
        (MessageRole.ASSISTANT, first.content),
        (MessageRole.USER, "How do I install pgvector?"),
        (MessageRole.ASSISTANT, second.content),
    ]
    times = [item.created_at for item in page.items]
    assert times == sorted(times) and len(set(times)) == 4
    assert times[0] >= chat.created_at
    # The answer returned is timed as it was stored (its cursor finds its place).
    assert [first.created_at, second.created_at] == [times[1], times[3]]
    after_first = await container.services.chats.messages(
        principal, [chat.id], 50, encode_cursor(first.created_at, first.id)
    )
    assert [item.content for item in after_first[chat.id].items] == [
        "How do I install pgvector?",
        second.content,
    ]
