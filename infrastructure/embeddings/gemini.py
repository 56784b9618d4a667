"""Gemini embeddings through the official google-genai SDK (``FOUNDRY_EMBEDDER=gemini``).

One SDK client per process, made in the constructor. Texts go out in batches of
at most 100 (the ``batchEmbedContents`` limit): chunks as RETRIEVAL_DOCUMENT,
questions as RETRIEVAL_QUERY, shortened by the API to ``dimensions`` and
normalised here, because Gemini only returns unit vectors at its full 3072.

Transient faults (HTTP 408, 429 and 5xx, timeouts, dropped connections, a body
that is not JSON) are retried with exponential backoff and jitter, then raised
as TransientFailure so the worker retries the document later. Questions and
answer sentences, which someone is waiting for, have a policy of their own: fewer
attempts, all within a short deadline (``query_deadline_seconds``), and each call
on its own, so a slow or failing Gemini costs a search seconds, not the minutes a
document may wait. Anything else Gemini refuses (bad key, unknown model, bad
request) raises GeminiConfigurationError at once, naming the setting to fix. The
SDK's own retries are off so the two layers don't multiply, and it always sends
through httpx2 (see ``gemini_faults.httpx_client``).
"""

from __future__ import annotations

import asyncio
import math
import re
from array import array
from collections.abc import Sequence
from dataclasses import dataclass

import structlog
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from domain.errors import EmbeddingRejected, TransientFailure
from infrastructure.answers.circuit_breaker import CircuitBreaker
from infrastructure.gemini_faults import (
    TRANSIENT_ERRORS,
    httpx_client,
    is_transient_status,
    rejection_message,
)

MAX_BATCH = 100
# What the embedding model reads of a text; the rest is cut off without an error.
MAX_INPUT_TOKENS = 2_048
# The longest chunk the settings accept with this embedder: chunks are measured by the
# ApproximateTokenizer, which may count a number, a code identifier or a word of a
# non-Latin script as one piece where the model counts several tokens.
MAX_CHUNK_TOKENS = MAX_INPUT_TOKENS // 2
DOCUMENT_TASK = "RETRIEVAL_DOCUMENT"
QUERY_TASK = "RETRIEVAL_QUERY"
log = structlog.get_logger("foundry.embeddings")


@dataclass(frozen=True, slots=True)
class _Policy:
    """How hard to try: attempts and the timeout of each."""

    attempts: int
    attempt_seconds: float


class GeminiConfigurationError(EmbeddingRejected):
    """Gemini refused the request and retrying cannot help; the message names the setting.

    An IngestionFailed: the document fails at once with EMBEDDING_REJECTED (after the
    operator fixes the setting, `reprocessDocument` or `foundry reembed` retries it).
    """


class ApproximateTokenizer:
    """Word-and-punctuation pieces standing in for Gemini's tokenizer, which only runs remotely.

    Chunk sizes are therefore approximate with the gemini embedder: a piece is a
    run of at most 10 word characters or one punctuation mark, an estimate of
    the model's subword count rather than the count itself. The model reads
    MAX_INPUT_TOKENS per text; the settings keep chunks to half of that
    (MAX_CHUNK_TOKENS), so an undercount does not lead to silent truncation.
    """

    _PIECE = re.compile(r"\w{1,10}|[^\w\s]")

    def token_starts(self, text: str) -> Sequence[int]:
        # 8 bytes a piece, not a list of int objects: a page may hold millions.
        return array("q", (match.start() for match in self._PIECE.finditer(text)))


class GeminiEmbedder:
    """The Embedder port on Gemini's embedding API, through the SDK's async client.

    ``timeout_seconds`` bounds each attempt; ``max_attempts`` and the backoff
    arguments shape the retries of transient faults (tests make them tiny).
    Questions and sentences get at most ``query_max_attempts`` (and never more than
    ``max_attempts``), each attempt its share of ``query_deadline_seconds``, and
    TransientFailure once that deadline has passed, whatever the attempt was doing.
    """

    def __init__(
        self,
        api_key: str,
        *,
        model: str = "gemini-embedding-001",
        dimensions: int = 384,
        base_url: str | None = None,
        timeout_seconds: float = 30.0,
        max_attempts: int = 5,
        backoff_initial_seconds: float = 1.0,
        backoff_max_seconds: float = 30.0,
        backoff_jitter_seconds: float = 1.0,
        batch_size: int = MAX_BATCH,
        query_max_attempts: int = 2,
        query_deadline_seconds: float = 5.0,
        query_breaker: CircuitBreaker | None = None,
    ) -> None:
        if not api_key.strip():
            raise GeminiConfigurationError(
                "FOUNDRY_GEMINI_API_KEY is not set; the gemini embedder needs an API key."
            )
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be between 1 and {MAX_BATCH}")
        if max_attempts < 1 or query_max_attempts < 1:
            raise ValueError("max_attempts and query_max_attempts must be at least 1")
        if query_deadline_seconds <= 0:
            raise ValueError("query_deadline_seconds must be positive")
        self.name = f"gemini:{model}"
        self.dimensions = dimensions
        self._model = model
        self._batch_size = batch_size
        self._ingestion = _Policy(max_attempts, timeout_seconds)
        query_attempts = min(query_max_attempts, max_attempts)
        self._query = _Policy(
            query_attempts, min(timeout_seconds, query_deadline_seconds / query_attempts)
        )
        self._query_deadline_seconds = query_deadline_seconds
        self._query_breaker = query_breaker
        self._wait = wait_exponential_jitter(
            initial=backoff_initial_seconds,
            max=backoff_max_seconds,
            jitter=backoff_jitter_seconds,
        )
        self._tokenizer = ApproximateTokenizer()
        self._http = httpx_client()
        self._client = genai.Client(
            vertexai=False,  # never switched to Vertex AI by GOOGLE_GENAI_USE_VERTEXAI
            api_key=api_key,
            http_options=types.HttpOptions(
                base_url=base_url,  # None keeps the SDK's endpoint
                timeout=max(1, round(timeout_seconds * 1000)),  # milliseconds
                retry_options=types.HttpRetryOptions(attempts=1),  # retries are ours
                httpx_async_client=self._http,  # never aiohttp, whatever is installed
            ),
        )

    @property
    def tokenizer(self) -> ApproximateTokenizer:
        return self._tokenizer

    def warm_up(self, queries: bool = False) -> None:
        """Nothing to load: the model runs at Google."""

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return await self._embed_all(texts, DOCUMENT_TASK, self._ingestion)

    async def embed_queries(self, texts: Sequence[str]) -> list[list[float]]:
        return await self._embed_live(texts, QUERY_TASK)

    async def embed_sentences(self, texts: Sequence[str]) -> list[list[float]]:
        return await self._embed_live(texts, DOCUMENT_TASK)

    async def embed_query(self, text: str) -> list[float]:
        return (await self._embed_live([text], QUERY_TASK))[0]

    async def _embed_live(self, texts: Sequence[str], task_type: str) -> list[list[float]]:
        """Texts someone is waiting for: the query policy, within its deadline, through
        the circuit breaker (while it is open, at once TransientFailure: every search and
        answer would otherwise wait out its deadline while Gemini is down)."""
        breaker = self._query_breaker
        if breaker is None:
            return await self._embed_within_deadline(texts, task_type)
        permit = breaker.allow(self._query_deadline_seconds)
        if permit is None:
            raise TransientFailure("Gemini embeddings are failing; the breaker is open for now.")
        try:
            vectors = await self._embed_within_deadline(texts, task_type)
        except TransientFailure:
            permit.failure()
            raise
        except BaseException:  # a refusal (Gemini is up), a cancellation: no verdict
            permit.release()
            raise
        permit.success()
        return vectors

    async def _embed_within_deadline(
        self, texts: Sequence[str], task_type: str
    ) -> list[list[float]]:
        deadline = self._query_deadline_seconds
        try:
            async with asyncio.timeout(deadline):
                return await self._embed_all(texts, task_type, self._query)
        except TimeoutError:  # each attempt's own timeout is a TransientFailure by now
            log.warning("gemini.deadline_passed", deadline_s=deadline, texts=len(texts))
            raise TransientFailure(
                f"Gemini embeddings did not answer within {deadline:g} s"
            ) from None

    async def _embed_all(
        self, texts: Sequence[str], task_type: str, policy: _Policy
    ) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self._batch_size):
            vectors.extend(
                await self._embed(list(texts[start : start + self._batch_size]), task_type, policy)
            )
        return vectors

    async def aclose(self) -> None:
        """Close the SDK's connection pools (tests; a worker keeps its client until exit)."""
        await self._client.aio.aclose()
        self._client.close()
        await self._http.aclose()

    async def _embed(self, texts: list[str], task_type: str, policy: _Policy) -> list[list[float]]:
        vectors: list[list[float]] = []
        retrying = AsyncRetrying(
            stop=stop_after_attempt(policy.attempts),
            wait=self._wait,
            retry=retry_if_exception_type(TransientFailure),
            before_sleep=_log_retry,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    vectors = await self._embed_once(texts, task_type, policy.attempt_seconds)
        except TransientFailure as failure:
            log.warning("gemini.gave_up", attempts=policy.attempts, error=str(failure))
            raise TransientFailure(
                f"Gemini embeddings unavailable after {policy.attempts} attempts: {failure}"
            ) from failure
        return vectors

    async def _embed_once(
        self, texts: list[str], task_type: str, timeout_seconds: float
    ) -> list[list[float]]:
        # One Content per text: the SDK merges a plain list of strings into a single
        # Content for multimodal models, which would return one vector for all.
        contents = [types.Content(parts=[types.Part(text=text)]) for text in texts]
        config = types.EmbedContentConfig(
            task_type=task_type, output_dimensionality=self.dimensions
        )
        try:
            async with asyncio.timeout(timeout_seconds):
                response = await self._client.aio.models.embed_content(
                    model=self._model, contents=contents, config=config
                )
        except genai_errors.APIError as exc:
            if is_transient_status(exc):
                raise TransientFailure(f"Gemini returned HTTP {exc.code} {exc.status}") from exc
            raise GeminiConfigurationError(
                rejection_message(
                    exc,
                    self._model,
                    "FOUNDRY_GEMINI_EMBEDDING_MODEL",
                    "FOUNDRY_GEMINI_EMBEDDING_MODEL and FOUNDRY_EMBEDDING_DIMENSIONS",
                )
            ) from exc
        except TRANSIENT_ERRORS as exc:  # including a body that is not JSON
            raise TransientFailure(f"Gemini request failed: {type(exc).__name__}") from exc
        return self._unit_vectors(response, len(texts))

    def _unit_vectors(self, response: types.EmbedContentResponse, count: int) -> list[list[float]]:
        embeddings = response.embeddings or []
        if len(embeddings) != count:
            raise GeminiConfigurationError(
                f"Gemini returned {len(embeddings)} embeddings for {count} texts; "
                "check FOUNDRY_GEMINI_BASE_URL points at the Gemini API."
            )
        vectors: list[list[float]] = []
        for embedding in embeddings:
            values = embedding.values or []
            norm = math.sqrt(math.fsum(value * value for value in values))
            if len(values) != self.dimensions or norm == 0.0:
                raise GeminiConfigurationError(
                    f"{self._model} returned a {len(values)}-dimension vector, not "
                    f"{self.dimensions}; check FOUNDRY_GEMINI_EMBEDDING_MODEL supports "
                    "FOUNDRY_EMBEDDING_DIMENSIONS."
                )
            vectors.append([value / norm for value in values])
        return vectors


def _log_retry(state: RetryCallState) -> None:
    failure = state.outcome.exception() if state.outcome is not None else None
    cause = failure.__cause__ if failure is not None else None
    log.warning(
        "gemini.retry",
        attempt=state.attempt_number,
        status=cause.code if isinstance(cause, genai_errors.APIError) else None,
        error=type(cause).__name__ if cause is not None else None,
        wait_s=round(state.next_action.sleep, 3) if state.next_action is not None else None,
    )
