"""Batch the texts of concurrent callers for a blocking encoder, on a thread of its own.

Questions arrive one per search, from many coroutines at once. Sent one by one through
``asyncio.to_thread``, each pays a hop to a pool thread and back, and a batch gathered on
the event loop waits for the loop to dispatch it, which under load is busy with other
requests: between two model runs the model sat idle. Here callers put their texts on a
queue that one thread drains: it takes whatever is waiting (up to ``max_texts``), encodes
it in one call, hands each caller its vectors on the caller's event loop, and goes
straight on to what queued meanwhile. The event loop only enqueues and receives.

The thread starts on the first call and ends after ``idle_seconds`` without work, so an
embedder that is dropped leaves no thread behind for long. A call whose caller has gone
(its future cancelled) before its batch starts is skipped; when a batch of several calls
fails, each is tried alone, so one bad text does not fail the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

Vectors = list[list[float]]
Encode = Callable[[list[str]], Vectors]


@dataclass(frozen=True, slots=True)
class _Request:
    texts: list[str]
    future: asyncio.Future[Vectors]
    loop: asyncio.AbstractEventLoop


class ThreadBatcher:
    def __init__(
        self, encode: Encode, max_texts: int, name: str, idle_seconds: float = 30.0
    ) -> None:
        if max_texts < 1:
            raise ValueError("max_texts must be at least 1")
        self._encode = encode
        self._max_texts = max_texts
        self._name = name
        self._idle_seconds = idle_seconds
        self._queue: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        # Guards starting and ending the thread against a request queued in between.
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    async def encode(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return []
        loop = asyncio.get_running_loop()
        request = _Request(list(texts), loop.create_future(), loop)
        with self._lock:
            self._queue.put(request)
            if self._thread is None:
                self._start_locked()
        return await request.future

    def _start_locked(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException:
            # Not an encoding error (those reach their callers): this thread is going
            # down. Calls queued meanwhile found it still alive and started none, so
            # another takes over what waits.
            with self._lock:
                self._thread = None
                if not self._queue.empty():
                    self._start_locked()
            raise

    def _loop(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=self._idle_seconds)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():
                        self._thread = None
                        return
                continue
            batch = [first]
            size = len(first.texts)
            while size < self._max_texts:
                try:
                    request = self._queue.get_nowait()
                except queue.Empty:
                    break
                batch.append(request)
                size += len(request.texts)
            self._serve(batch)

    def _serve(self, batch: list[_Request]) -> None:
        live = [request for request in batch if not request.future.cancelled()]
        if not live:
            return
        try:
            vectors = self._encode([text for request in live for text in request.texts])
        except Exception as error:
            if len(live) == 1:
                _fail(live[0], error)
                return
            for request in live:  # one bad text must not fail the others
                self._serve([request])
            return
        except BaseException:
            for request in live:
                _fail(request, RuntimeError("the embedding thread stopped"))
            raise
        # One wake-up per event loop for the whole batch (there is one loop per process,
        # apart from tests).
        results: dict[asyncio.AbstractEventLoop, list[tuple[_Request, Vectors]]] = {}
        offset = 0
        for request in live:
            count = len(request.texts)
            results.setdefault(request.loop, []).append((request, vectors[offset : offset + count]))
            offset += count
        for loop, settled in results.items():
            _call_soon(loop, partial(_settle, settled))


def _settle(results: list[tuple[_Request, Vectors]]) -> None:
    for request, vectors in results:
        if not request.future.done():
            request.future.set_result(vectors)


def _fail(request: _Request, error: Exception) -> None:
    def settle() -> None:
        if not request.future.done():
            request.future.set_exception(error)

    _call_soon(request.loop, settle)


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
    # RuntimeError: the caller's event loop has closed, so nobody is waiting.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback)
