"""Reading one Gemini stream: bounded waits, completion, usage, fault classes, a prompt close.

Waiting for the first chunk, and for each next one, is bounded by
``stream_idle_seconds``, and the whole stream by its deadline (set by the
answerer); ``timeout_seconds`` is the SDK's HTTP timeout (httpx applies it to
connecting and to each read). A stream that ends without a candidate's
finishReason was cut off: the SDK ends such a stream silently, so it is checked
here.

Closing the stream early closes the HTTP response at once. The SDK's stream is a
chain of async generators that only closes its response when iterated to the end
(an abandoned chain keeps the connection open until the garbage collector finds
it), so the response is caught with an httpx event hook, closed, and the chain
is then run to its end, which it reaches with a read error. Closing never raises
an Exception, so a fault while closing cannot hide how the call ended.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator
from contextlib import suppress
from typing import Literal

import httpx2
import structlog
from google.genai import errors as genai_errors
from google.genai import types

from infrastructure.gemini_faults import TRANSIENT_ERRORS, is_transient_status, rejection_message

CLOSE_TIMEOUT_SECONDS = 1.0

log = structlog.get_logger("foundry.answers")

# The HTTP responses opened by the stream that is being read in this context.
_opened_responses: contextvars.ContextVar[list[httpx2.Response] | None] = contextvars.ContextVar(
    "gemini_opened_responses", default=None
)


async def remember_response(response: httpx2.Response) -> None:
    opened = _opened_responses.get()
    if opened is not None:
        opened.append(response)


FaultKind = Literal["transient", "rejected", "unexpected"]


class Fault(Exception):
    """Why a call failed: ``transient`` is retried before the first token and counts
    against the provider; ``rejected`` (Gemini refused the request) is never retried
    and says nothing about the provider's health; ``unexpected`` is neither retried
    nor excused."""

    def __init__(self, message: str, kind: FaultKind, status: int | None, error: str) -> None:
        super().__init__(message)
        self.kind: FaultKind = kind
        self.status = status
        self.error = error
        self.attempts = 1


def classify(exc: Exception, model: str) -> Fault:
    if isinstance(exc, Fault):
        return exc
    error = type(exc).__name__
    if isinstance(exc, genai_errors.APIError):
        if is_transient_status(exc):
            return Fault(
                f"Gemini returned HTTP {exc.code} {exc.status}", "transient", exc.code, error
            )
        message = rejection_message(
            exc,
            model,
            "FOUNDRY_GEMINI_ANSWER_MODEL",
            "FOUNDRY_GEMINI_ANSWER_MODEL and FOUNDRY_GEMINI_MAX_OUTPUT_TOKENS",
        )
        return Fault(message, "rejected", exc.code, error)
    if isinstance(exc, TRANSIENT_ERRORS):
        return Fault(f"Gemini request failed: {error}", "transient", None, error)
    return Fault(f"Gemini call failed unexpectedly: {error}", "unexpected", None, error)


class GeminiStream:
    """One SDK stream being read: bounded waits, completion and usage, a prompt close.

    ``deadline``: the event loop's time by which the whole stream must have ended.
    """

    def __init__(
        self,
        chunks: AsyncIterator[types.GenerateContentResponse],
        idle: float,
        model: str,
        deadline: float,
    ) -> None:
        self._chunks = chunks
        self._idle = idle
        self._model = model
        self._deadline = deadline
        self._responses: list[httpx2.Response] = []
        self.attempts = 1
        self.finish_reason: types.FinishReason | None = None
        self.block_reason: str | None = None
        self.usage: types.GenerateContentResponseUsageMetadata | None = None

    async def next_text(self) -> str | None:
        """The text of the next chunk ("" when it has none); None at the end of the stream."""
        idle_until = asyncio.get_running_loop().time() + self._idle
        token = _opened_responses.set(self._responses)
        try:
            async with asyncio.timeout_at(min(idle_until, self._deadline)):
                chunk = await anext(self._chunks)
        except StopAsyncIteration:
            return None
        except TimeoutError as exc:
            if self._deadline < idle_until:
                # A slow trickle: every piece within the idle time, the whole too long.
                raise Fault(
                    "Gemini's answer ran past its deadline (FOUNDRY_GEMINI_TIMEOUT_SECONDS "
                    "and FOUNDRY_GEMINI_MAX_OUTPUT_TOKENS set it)",
                    "transient",
                    None,
                    "StreamDeadline",
                ) from exc
            raise Fault(
                f"Gemini sent nothing for {self._idle:g}s (FOUNDRY_GEMINI_STREAM_IDLE_SECONDS)",
                "transient",
                None,
                "IdleTimeout",
            ) from exc
        except Exception as exc:
            raise classify(exc, self._model) from exc
        finally:
            _opened_responses.reset(token)
        return self._observe(chunk)

    def check_complete(self) -> None:
        """Raise unless the stream ended the way a finished answer does."""
        if self.block_reason is not None:
            raise Fault(
                f"Gemini refused the prompt ({self.block_reason})",
                "rejected",
                None,
                "PromptBlocked",
            )
        if self.finish_reason is None:
            raise Fault(
                "Gemini's stream ended without a finish reason (cut off)",
                "transient",
                None,
                "StreamCutOff",
            )

    async def close(self) -> None:
        """Close the response and end the SDK's generators; raises no Exception (a
        cancellation still goes through)."""
        for response in self._responses:
            try:
                await response.aclose()
            except Exception as exc:
                # The connection is dropped either way; how the call ended matters more.
                log.info("llm.close_failed", error=type(exc).__name__)
        # With its response closed, the SDK's generator chain ends at the next step
        # with a read error, and every generator in it finishes (no orphan keeps a
        # socket or waits for the garbage collector). A chain that already ended
        # just raises StopAsyncIteration.
        with suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
                while True:
                    await anext(self._chunks)

    def _observe(self, chunk: types.GenerateContentResponse) -> str:
        if chunk.usage_metadata is not None:
            self.usage = chunk.usage_metadata
        feedback = chunk.prompt_feedback
        if feedback is not None and feedback.block_reason is not None:
            self.block_reason = str(feedback.block_reason.value)
        if not chunk.candidates:
            return ""
        candidate = chunk.candidates[0]
        if candidate.finish_reason is not None:
            self.finish_reason = candidate.finish_reason
        return text_of(candidate)


def text_of(candidate: types.Candidate) -> str:
    """The answer text of a candidate, without any thought summaries."""
    parts = candidate.content.parts if candidate.content is not None else None
    return "".join(part.text for part in parts or [] if part.text and not part.thought)
