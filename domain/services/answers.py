"""Answering a question in a chat: condense, retrieve, generate (streamed), persist.

The question is stored when it arrives; the assistant's message only once the
answer is complete, in one transaction. A caller that stops listening closes
the stream, which closes the generator in turn: nothing keeps running and no
partial answer is ever stored as if it were complete.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, replace
from uuid import UUID, uuid4

from domain.answers.cache import AnswerCache, CachedAnswer
from domain.answers.events import (
    AnswerCompleted,
    AnswerDelta,
    AnswerEvent,
    CitedSource,
    SourcesFound,
)
from domain.answers.ports import (
    AnswerGenerator,
    AnswerObserver,
    AnswerRequest,
    GenerationFailed,
    GenerationFinished,
    GroundingSource,
    TextDelta,
    Turn,
)
from domain.answers.prompt import NO_ANSWER_TEXT
from domain.answers.text import snippet, word_pieces
from domain.chats.entities import Chat, Message, MessageRole, Source, Usage
from domain.entities import DocumentStatus, Principal
from domain.errors import DomainError, LlmUnavailable, NotFound
from domain.ports import Clock, UnitOfWorkFactory
from domain.retrieval.entities import Retrieval, SearchHit
from domain.services.chats import DEFAULT_TITLE, title_from_question
from domain.services.search import SearchService, clean_question

NO_SOURCES_MODEL = "none"
CACHE_GENERATOR = "cache"


_CITATION = re.compile(r"\[(\d{1,6})\]")


def unknown_citations(content: str, sources: Sequence[Source]) -> list[int]:
    """The numbers ``content`` cites as ``[n]`` that none of ``sources`` has, in order."""
    given = {source.index for source in sources}
    cited = dict.fromkeys(int(number) for number in _CITATION.findall(content))
    return [number for number in cited if number not in given]


@dataclass(frozen=True, slots=True)
class AnswerOptions:
    max_question_chars: int = 2_000
    max_sources: int = 6
    min_similarity: float = 0.25
    history_messages: int = 6


@dataclass(frozen=True, slots=True)
class _Restart:
    """The primary generator failed after output the caller has not seen: start over."""


@dataclass(frozen=True, slots=True)
class _FallingBack:
    """What follows comes from the fallback generator, named ``generator``."""

    generator: str


class _Incomplete:
    """The generator stopped before the end of its answer: keep it, never cache it."""


class _Written:
    """The answer's text as it is produced, and how it ended."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.usage: Usage | None = None
        self.complete = True

    def take(self, piece: TextDelta | Usage | _Restart | _Incomplete) -> str | None:
        """Record ``piece``; its text, if it is text for the reader."""
        if isinstance(piece, TextDelta):
            self.parts.append(piece.text)
            return piece.text
        if isinstance(piece, Usage):
            self.usage = piece
        elif isinstance(piece, _Restart):
            self.parts.clear()
        else:
            self.complete = False
        return None

    @property
    def cacheable(self) -> bool:
        """A whole answer from the configured generator (not a fallback, not cut short)."""
        return self.complete and self.usage is not None and not self.usage.degraded


@dataclass(frozen=True, slots=True)
class _Cited:
    """The sources an answer cites; ``answer`` is set when it is a cached one replayed."""

    sources: list[CitedSource]
    answer: CachedAnswer | None = None


@dataclass(frozen=True, slots=True)
class _Finished:
    info: GenerationFinished
    degraded: bool


class AnswerService:
    def __init__(
        self,
        *,
        uow_factory: UnitOfWorkFactory,
        search: SearchService,
        generator: AnswerGenerator,
        fallback: AnswerGenerator | None,
        observer: AnswerObserver,
        clock: Clock,
        options: AnswerOptions,
        cache: AnswerCache | None = None,
    ) -> None:
        self._uow_factory = uow_factory
        self._cache = cache
        self._search = search
        self._generator = generator
        self._fallback = fallback
        self._observer = observer
        self._clock = clock
        self._options = options

    async def ask(
        self,
        principal: Principal,
        chat_id: UUID,
        question: str,
        document_ids: Sequence[UUID] | None = None,
    ) -> AnswerCompleted:
        """The whole answer at once (a provider failure midway falls back, unseen).

        ``document_ids`` limits retrieval to those documents as search's ``documentIds``
        does (None: the whole organisation; ids the caller cannot see match nothing).
        """
        answering = self._answer(principal, chat_id, question, document_ids, buffered=True)
        async with aclosing(answering) as events:
            async for event in events:
                if isinstance(event, AnswerCompleted):
                    return event
        raise RuntimeError("the answer stream ended without completing")

    def stream(
        self,
        principal: Principal,
        chat_id: UUID,
        question: str,
        document_ids: Sequence[UUID] | None = None,
    ) -> AsyncGenerator[AnswerEvent, None]:
        """SourcesFound, AnswerDelta*, AnswerCompleted; raises a DomainError on failure.

        ``document_ids`` as for :meth:`ask`.
        """
        return self._answer(principal, chat_id, question, document_ids, buffered=False)

    async def _answer(
        self,
        principal: Principal,
        chat_id: UUID,
        question: str,
        document_ids: Sequence[UUID] | None,
        *,
        buffered: bool,
    ) -> AsyncGenerator[AnswerEvent, None]:
        outcome = "cancelled"
        try:
            question = clean_question(question, self._options.max_question_chars, "question")
            # Before the question is stored: a refused ask leaves nothing behind.
            self._search.check_document_ids(document_ids)
            started = time.perf_counter()
            standalone, corpus, early = await self._prepare(principal, chat_id, question)
            # The cache is shared by the whole organisation, so only a question that
            # stands alone as its asker typed it may enter or leave it. A rewritten
            # follow-up carries words of the asker's earlier messages (Gemini's rewrite
            # may restate anything from them, even what an earlier answer quoted), and
            # its answer was built from that text: keyed by it, the answer would reach
            # colleagues who type the same words, and a lookup with it would match
            # their questions. Any change counts, since only an unchanged question is
            # sure to hold nothing from the history; the answer itself is built from
            # the question and the organisation's documents only.
            shareable = standalone == question
            # An answer limited to chosen documents is drawn from them alone: cached, it
            # would answer the question asked of the whole organisation or of other
            # documents. A scoped question neither enters nor leaves the cache.
            cacheable = shareable and document_ids is None
            retrieval_started = time.perf_counter()
            cached, embedding = (
                await self._cached(principal, corpus, standalone, early)
                if cacheable
                else (None, early)
            )
            if cached is not None and cached.answer is not None:
                cited = cached
                produced: AsyncGenerator[TextDelta | Usage | _Restart | _Incomplete, None] = (
                    self._replayed(cached.sources, cached.answer, started)
                )
            else:
                retrieval = await self._search.retrieve(
                    principal,
                    standalone,
                    self._options.max_sources,
                    document_ids,
                    embedding=embedding,
                )
                relevant = self._relevant(retrieval.hits)
                cited = _Cited(
                    [self._cited(index, hit) for index, hit in enumerate(relevant, start=1)]
                )
                produced = (
                    self._written(
                        self._request(
                            standalone,
                            None if shareable else question,
                            cited.sources,
                            relevant,
                            retrieval,
                        ),
                        started,
                        buffered,
                    )
                    if cited.sources
                    else self._nothing_found(started)
                )
            self._observer.retrieval(time.perf_counter() - retrieval_started, len(cited.sources))
            yield SourcesFound(cited.sources)

            written = _Written()
            async with aclosing(produced) as pieces:
                async for piece in pieces:
                    text = written.take(piece)
                    if text is not None and not buffered:
                        yield AnswerDelta(text)
            usage = written.usage
            if usage is None:
                raise LlmUnavailable("The answer ended unexpectedly; try again.")

            content = "".join(written.parts)
            sources = [item.source for item in cited.sources]
            unknown = unknown_citations(content, sources)
            if unknown:
                # A model's slip, kept as written (the reader has seen it): told to the
                # operators, who can tell a model that does it often.
                self._observer.unknown_citations(usage.model, unknown, len(sources))
            message = await self._record_answer(principal, chat_id, content, sources, usage)
            if cacheable and cached is None and embedding is not None and written.cacheable:
                await self._remember(principal, corpus, embedding, standalone, message)
            self._observer.finished(
                usage.model,
                usage.latency_ms / 1000,
                usage.prompt_tokens,
                usage.completion_tokens,
                usage.degraded,
            )
            outcome = "done"
            yield AnswerCompleted(
                message, {item.document.id: item.document for item in cited.sources}
            )
        except DomainError as error:
            outcome = error.code.value
            raise
        except Exception:
            outcome = "INTERNAL"
            raise
        finally:  # GeneratorExit / CancelledError: the caller stopped listening
            self._observer.outcome(outcome)

    async def _written(
        self, request: AnswerRequest, started: float, buffered: bool
    ) -> AsyncGenerator[TextDelta | Usage | _Restart | _Incomplete, None]:
        """The generator's text, then the Usage; first-token time is measured here,
        under the name of the generator that wrote that token."""
        first_token = True
        generator = self._generator.name
        async with aclosing(self._generate(request, buffered)) as generated:
            async for item in generated:
                if isinstance(item, _FallingBack):
                    generator = item.generator
                    continue
                if isinstance(item, _Finished):
                    if not item.info.complete:
                        yield _Incomplete()
                    yield self._usage(item, started)
                    return
                if isinstance(item, TextDelta):
                    if not item.text:
                        continue
                    if first_token:
                        first_token = False
                        self._observer.first_token(generator, time.perf_counter() - started)
                yield item

    async def _nothing_found(self, started: float) -> AsyncGenerator[TextDelta | Usage, None]:
        for piece in word_pieces(NO_ANSWER_TEXT):
            yield TextDelta(piece)
        yield Usage(NO_SOURCES_MODEL, None, None, self._elapsed_ms(started), False)

    async def _prepare(
        self, principal: Principal, chat_id: UUID, question: str
    ) -> tuple[str, str, list[float] | None]:
        """Store the question; the standalone question, the corpus version, and the
        standalone question's embedding if it is already known.

        Most questions stand alone as asked, so their embedding starts at once, on the
        model's thread, while the question is stored and the history read; a rewritten
        follow-up gets its own embedding later and this one is dropped.
        """
        early = asyncio.create_task(self._search.embed(question))
        try:
            history, corpus = await self._record_question(principal, chat_id, question)
            standalone = await self._generator.condense(history, question)
            embedding = await early if standalone == question else None
        finally:
            if not early.done():
                early.cancel()
            elif not early.cancelled():
                early.exception()  # retrieved: a failure here is not logged as unhandled
        return standalone, corpus, embedding

    async def _cached(
        self, principal: Principal, corpus: str, question: str, embedding: list[float] | None
    ) -> tuple[_Cited | None, list[float] | None]:
        """A cached answer to ``question`` whose documents are all still there, and the
        question's embedding when it is known (given, or computed here; retrieval reuses
        it)."""
        if self._cache is None:
            return None, embedding
        organization_id = principal.organization_id
        answer = await self._cache.exact(organization_id, corpus, question)
        kind = "exact"
        if answer is None:
            if embedding is None:
                embedding = await self._search.embed(question)
            answer = await self._cache.similar(organization_id, corpus, embedding)
            kind = "semantic"
        cited = await self._replay_sources(principal, answer) if answer is not None else None
        self._observer.cache(kind if cited is not None else "miss")
        if cited is None and embedding is None:
            embedding = await self._search.embed(question)
        return cited, embedding

    async def _replay_sources(self, principal: Principal, answer: CachedAnswer) -> _Cited | None:
        ids = list({source.document_id for source in answer.sources})
        async with self._uow_factory.reader(principal) as reader:
            documents = {document.id: document for document in await reader.documents.get_many(ids)}
        if any(
            documents.get(document_id) is None
            or documents[document_id].status != DocumentStatus.READY
            for document_id in ids
        ):
            return None
        return _Cited(
            [CitedSource(source, documents[source.document_id]) for source in answer.sources],
            answer,
        )

    async def _replayed(
        self, sources: Sequence[CitedSource], answer: CachedAnswer, started: float
    ) -> AsyncGenerator[TextDelta | Usage, None]:
        """A cached answer streamed like a fresh one, in pieces of a few words."""
        generator = CACHE_GENERATOR if sources else NO_SOURCES_MODEL
        for position, piece in enumerate(word_pieces(answer.content)):
            if position == 0:
                self._observer.first_token(generator, time.perf_counter() - started)
            yield TextDelta(piece)
        yield Usage(answer.model, 0, 0, self._elapsed_ms(started), False)

    async def _remember(
        self, principal: Principal, corpus: str, embedding: list[float], question: str,
        message: Message,
    ) -> None:  # fmt: skip
        if self._cache is None or message.usage is None:
            return
        model = message.usage.model
        answer = CachedAnswer(question, message.content, tuple(message.sources), model)
        await self._cache.store(principal.organization_id, corpus, embedding, answer)

    @staticmethod
    def _request(
        question: str,
        asked: str | None,
        cited: Sequence[CitedSource],
        relevant: Sequence[SearchHit],
        retrieval: Retrieval,
    ) -> AnswerRequest:
        return AnswerRequest(
            question=question,
            rewritten_from=asked,
            sources=[
                GroundingSource(
                    index=item.source.index,
                    document_id=item.document.id,
                    filename=item.document.filename,
                    page=item.source.page,
                    text=hit.text,
                    token_count=hit.token_count,
                )
                for item, hit in zip(cited, relevant, strict=True)
            ],
            question_embedding=retrieval.query_embedding,
        )

    async def _generate(
        self, request: AnswerRequest, buffered: bool
    ) -> AsyncGenerator[TextDelta | _Finished | _Restart | _FallingBack, None]:
        emitted = False
        try:
            async with aclosing(self._generator.stream(request)) as events:
                async for event in events:
                    if isinstance(event, GenerationFinished):
                        yield _Finished(event, degraded=False)
                    else:
                        emitted = emitted or bool(event.text)
                        yield event
            return
        except GenerationFailed as failure:
            if self._fallback is None:
                raise LlmUnavailable() from failure
            if emitted and not buffered:
                # The caller has already seen part of this answer; switching answerers
                # now would splice two texts together.
                self._observer.fallback("cut_off")
                raise LlmUnavailable(
                    "The language model stopped in the middle of the answer; ask again."
                ) from failure
            self._observer.fallback("unavailable")
            if emitted:
                yield _Restart()
        yield _FallingBack(self._fallback.name)
        async with aclosing(self._fallback.stream(request)) as events:
            async for event in events:
                yield (
                    _Finished(event, degraded=True)
                    if isinstance(event, GenerationFinished)
                    else event
                )

    def _relevant(self, hits: Sequence[SearchHit]) -> list[SearchHit]:
        relevant = [hit for hit in hits if hit.similarity >= self._options.min_similarity]
        return relevant[: self._options.max_sources]

    @staticmethod
    def _cited(index: int, hit: SearchHit) -> CitedSource:
        source = Source(
            index=index,
            document_id=hit.document.id,
            chunk_id=hit.chunk_id,
            page=hit.page,
            snippet=snippet(hit.text),
            score=round(hit.score, 6),
        )
        return CitedSource(source, hit.document)

    async def _record_question(
        self, principal: Principal, chat_id: UUID, question: str
    ) -> tuple[list[Turn], str]:
        """Store the question; returns the history before it (oldest first) and the
        corpus version (for the answer cache)."""
        async with self._uow_factory.chat_turn(principal) as turn:
            # Locked: a deleteChat or renameChat waits for this commit (the title below
            # is chosen from the chat as it is, and the question never lands in a chat
            # deleted meanwhile).
            locked = await turn.lock_chat(chat_id)
            if locked is None:
                raise NotFound("No such chat.")
            # Read under the lock: questions asked at once in one chat are timed in
            # the order they are stored, so a page of messages never gains one behind
            # its cursor.
            now = self._clock.now()
            chat, corpus = locked
            earlier = await turn.history(chat_id, self._options.history_messages)
            question_message = Message(
                id=uuid4(),
                chat_id=chat_id,
                organization_id=principal.organization_id,
                role=MessageRole.USER,
                content=question,
                sources=[],
                created_at=now,
            )
            await turn.append(question_message, title=self._new_title(chat, earlier, question))
            await turn.commit()
        return earlier, corpus if self._cache is not None else ""

    @staticmethod
    def _new_title(chat: Chat, earlier: list[Turn], question: str) -> str | None:
        if chat.title == DEFAULT_TITLE and not earlier:
            return title_from_question(question)
        return None

    async def _record_answer(
        self,
        principal: Principal,
        chat_id: UUID,
        content: str,
        sources: list[Source],
        usage: Usage,
    ) -> Message:
        async with self._uow_factory.chat_turn(principal) as turn:
            if await turn.lock_chat(chat_id) is None:
                raise NotFound("The chat was deleted while the answer was being written.")
            # Timed under the lock, as a question is: one asked meanwhile either is
            # stored first and timed before this answer, or waits and is timed after it,
            # so a page of messages never gains this answer behind its cursor.
            message = Message(
                id=uuid4(),
                chat_id=chat_id,
                organization_id=principal.organization_id,
                role=MessageRole.ASSISTANT,
                content=content,
                sources=sources,
                created_at=self._clock.now(),
                usage=usage,
            )
            touched = await turn.append(message)
            if touched is None:  # held: only if the invariant broke
                raise RuntimeError("the locked chat was not there to store the answer in")
            await turn.commit()
        # As stored: never before the chat's last message, whatever this clock says.
        return replace(message, created_at=touched.updated_at)

    def _usage(self, finished: _Finished, started: float) -> Usage:
        return Usage(
            model=finished.info.model,
            prompt_tokens=finished.info.prompt_tokens,
            completion_tokens=finished.info.completion_tokens,
            latency_ms=self._elapsed_ms(started),
            degraded=finished.degraded,
        )

    @staticmethod
    def _elapsed_ms(started: float) -> int:
        return round((time.perf_counter() - started) * 1000)
