"""Coalesce concurrent embedding calls into larger model batches.

A worker processes several documents at once, each often only a few chunks
long, and an API process embeds the questions of concurrent searches. Calling
the model per document or per question wastes it on small batches that wait
for each other (the model runs one call at a time); this wrapper gathers
whatever requests are waiting while the model is busy and embeds them in one
call (the model sorts by length, so padding stays low). Documents, questions and
answer sentences queue separately: each kind has its own provider call. The
composition root coalesces only documents (see ``coalesce_queries``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from domain.errors import ServiceUnavailable, TransientFailure
from domain.ingestion.chunking import Tokenizer
from domain.ingestion.ports import Embedder

EmbedCall = Callable[[Sequence[str]], Awaitable[list[list[float]]]]


@dataclass
class _Request:
    texts: list[str]
    future: asyncio.Future[list[list[float]]]


class _Coalescer:
    """One queue of embedding requests served by one task, a batch at a time."""

    def __init__(self, call: EmbedCall, max_batch: int, name: str) -> None:
        self._call = call
        self._max_batch = max_batch
        self._name = name
        self._queue: asyncio.Queue[_Request] | None = None
        self._runner: asyncio.Task[None] | None = None
        self._closed = False

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        if self._closed:  # a runner started now would outlive the process's shutdown
            raise RuntimeError("the embedder was closed")
        if self._queue is None:
            self._queue = asyncio.Queue()
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run(self._queue), name=self._name)
        future: asyncio.Future[list[list[float]]] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Request(list(texts), future))
        return await future

    async def aclose(self) -> None:
        """Stop the runner; requests still queued fail (the process is shutting down), and
        so do the ones it was serving, and any made afterwards."""
        self._closed = True
        runner, self._runner = self._runner, None
        if runner is not None and not runner.done():
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        if self._queue is not None:
            while not self._queue.empty():
                _fail([self._queue.get_nowait()], RuntimeError("the embedder was closed"))

    async def _run(self, queue: asyncio.Queue[_Request]) -> None:
        while True:
            batch = [await queue.get()]
            size = len(batch[0].texts)
            while size < self._max_batch and not queue.empty():
                request = queue.get_nowait()
                batch.append(request)
                size += len(request.texts)
            live = [request for request in batch if not request.future.cancelled()]
            if not live:
                continue
            try:
                await self._serve(live)
            except Exception as exc:  # a bug must not leave the batch's callers waiting
                _fail(live, exc)
            except BaseException:
                # Stopped (aclose) wherever it was: in the batch's call or in the retries
                # of its requests one by one. Those not answered yet fail now, or their
                # callers would wait for ever (aclose fails only what is still queued).
                _fail(live, RuntimeError("the embedding batcher was stopped"))
                raise

    async def _serve(self, live: list[_Request]) -> None:
        """Answer every request of ``live``, each with its vectors or an error."""
        try:
            vectors = await self._call([text for request in live for text in request.texts])
        except (TransientFailure, ServiceUnavailable) as exc:
            # The provider is down, after its own retries: no request's text is to
            # blame, and trying each alone would queue the others behind one full
            # retry cycle per request.
            _fail(live, exc)
            return
        except Exception as exc:
            if len(live) == 1:
                _fail(live, exc)
            else:
                # One request's bad text must not fail the others: retry alone.
                await self._one_by_one(live)
            return
        offset = 0
        for request in live:
            count = len(request.texts)
            if not request.future.done():
                request.future.set_result(vectors[offset : offset + count])
            offset += count

    async def _one_by_one(self, requests: list[_Request]) -> None:
        for request in requests:
            if request.future.cancelled():  # its caller left while the others were tried
                continue
            try:
                result = await self._call(request.texts)
            except Exception as exc:
                _fail([request], exc)
            else:
                if not request.future.done():
                    request.future.set_result(result)


def _fail(requests: list[_Request], error: BaseException) -> None:
    for request in requests:
        if not request.future.done():
            request.future.set_exception(error)


class BatchingEmbedder:
    def __init__(
        self,
        inner: Embedder,
        max_batch: int = 256,
        max_query_batch: int = 32,
        *,
        coalesce_queries: bool = True,
    ) -> None:
        """``coalesce_queries=False``: questions and sentences go straight to ``inner``,
        which batches them itself (the local model, on its own thread: thread_batcher.py)
        or takes several calls at once (a remote API, where one slow call must not hold
        up the questions behind it: gemini.py bounds each by a deadline of its own)."""
        self._inner = inner
        self._documents = _Coalescer(inner.embed_documents, max_batch, "embedding-batcher")
        self._queries: _Coalescer | None = None
        self._sentences: _Coalescer | None = None
        if coalesce_queries:
            self._queries = _Coalescer(inner.embed_queries, max_query_batch, "query-batcher")
            self._sentences = _Coalescer(inner.embed_sentences, max_query_batch, "sentence-batcher")
        self.name = inner.name
        self.dimensions = inner.dimensions

    @property
    def tokenizer(self) -> Tokenizer:
        return self._inner.tokenizer

    def warm_up(self, queries: bool = False) -> None:
        self._inner.warm_up(queries)

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return await self._documents.embed(texts)

    async def embed_queries(self, texts: Sequence[str]) -> list[list[float]]:
        if self._queries is None:
            return await self._inner.embed_queries(texts)
        return await self._queries.embed(texts)

    async def embed_query(self, text: str) -> list[float]:
        return (await self.embed_queries([text]))[0]

    async def embed_sentences(self, texts: Sequence[str]) -> list[list[float]]:
        if self._sentences is None:
            return await self._inner.embed_sentences(texts)
        return await self._sentences.embed(texts)

    async def aclose(self) -> None:
        """Stop the batching tasks (they live as long as the event loop otherwise)."""
        for coalescer in (self._documents, self._queries, self._sentences):
            if coalescer is not None:
                await coalescer.aclose()
