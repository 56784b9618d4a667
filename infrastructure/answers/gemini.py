"""Answers streamed from Gemini through the official google-genai SDK (``FOUNDRY_ANSWERER=gemini``).

One SDK client per instance, made in the constructor, with the SDK's own
retries off. Before the first token reaches the caller, transient faults (HTTP
408, 429 and 5xx, dropped connections, timeouts, a stream cut off before any
text) are retried with exponential backoff and jitter; after it, any fault
raises GenerationFailed, because the client already shows part of the answer.
Any other refusal (bad key, unknown model, bad request) raises GenerationFailed
at once, naming the setting to check.

Two deadlines bound an answer whatever the per-piece idle timeout allows: its
first text within ``timeout_seconds`` of the call, retries and backoff included,
and the whole stream within that plus ``max_output_tokens`` at
:data:`MIN_TOKENS_PER_SECOND` (81 s with the default settings); past either, it
raises GenerationFailed and the caller falls back. Google is told the same whole
deadline (the ``X-Server-Timeout`` header of the stream request), so it never stops
generating an answer the app is still willing to wait for.

Token counts include the model's thoughts (billed as output), and a rewrite's are
counted in ``foundry_answer_tokens_total`` under ``kind="condense_prompt"`` and
``kind="condense_completion"``.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import AsyncGenerator, Callable, Sequence

import structlog
from google import genai
from google.genai import types
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from domain.answers.condense import condense_locally, needs_context
from domain.answers.ports import (
    AnswerRequest,
    GenerationEvent,
    GenerationFailed,
    GenerationFinished,
    TextDelta,
    Turn,
)
from domain.answers.prompt import build_answer_prompt, build_condense_prompt
from domain.chats.entities import MessageRole
from infrastructure.answers.circuit_breaker import CircuitBreaker, Permit
from infrastructure.answers.gemini_stream import (
    CLOSE_TIMEOUT_SECONDS,
    Fault,
    GeminiStream,
    classify,
    remember_response,
    text_of,
)
from infrastructure.gemini_faults import httpx_client
from infrastructure.observability.answer_metrics import ANSWER_TOKENS

ANSWER_TEMPERATURE = 0.2
CONDENSE_TEMPERATURE = 0.0
# A rewrite delays the answer's first token, so it gets a short leash.
CONDENSE_TIMEOUT_SECONDS = 5.0
# The slowest average output (thoughts included) a whole answer may take: its
# deadline is the first-token budget plus max_output_tokens at this rate.
MIN_TOKENS_PER_SECOND = 20.0
# A half-open trial's lease on the breaker outlasts the call's own deadlines by this.
LEASE_MARGIN_SECONDS = CLOSE_TIMEOUT_SECONDS + 4.0

log = structlog.get_logger("foundry.answers")


def finish_reason_name(reason: types.FinishReason | None) -> str:
    return reason.name if isinstance(reason, types.FinishReason) else str(reason)


def condense_thinking(model: str) -> types.ThinkingConfig | None:
    """The least thinking ``model`` accepts for a rewrite: none, except on Pro models,
    which cannot turn it off (128 tokens is 2.5 Pro's minimum). Thinking counts
    against max_output_tokens and only delays a one-line rewrite. Models before 2.5
    do not think, and get no thinking configuration at all (None)."""
    if _THINKING_MODEL.match(model) is None:
        return None
    return types.ThinkingConfig(thinking_budget=128 if "-pro" in model else 0)


# Gemini 2.5 and later think by default ("gemini-2.5-flash", "models/gemini-3-pro").
_THINKING_MODEL = re.compile(r"(?:models/)?gemini-(?:2\.5|[3-9]|[1-9]\d)")


def incomplete_note(reason: str) -> str:
    """Said at the end of an answer the model stopped early, so no reader takes it as whole."""
    if reason == types.FinishReason.MAX_TOKENS.name:
        why = "the model reached its output limit"
    else:
        why = f"the model stopped early ({reason})"
    return f"\n\n(This answer is incomplete: {why}.)"


class GeminiAnswerer:
    """The AnswerGenerator port on Gemini's streamGenerateContent, via the SDK's async client."""

    def __init__(
        self,
        api_key: str,
        *,
        model: str,
        base_url: str | None,
        timeout_seconds: float,
        stream_idle_seconds: float,
        max_attempts: int,
        max_output_tokens: int,
        breaker: CircuitBreaker,
        backoff_initial_seconds: float = 0.5,
        backoff_max_seconds: float = 4.0,
        backoff_jitter_seconds: float = 0.5,
    ) -> None:
        if not api_key.strip():
            raise ValueError(
                "FOUNDRY_GEMINI_API_KEY is not set; the gemini answerer needs an API key."
            )
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.name = f"gemini:{model}"
        self._model = model
        self._idle = stream_idle_seconds
        self._max_attempts = max_attempts
        self._max_output_tokens = max_output_tokens
        # The first text within the HTTP timeout, retries included; the whole stream
        # within that plus max_output_tokens at MIN_TOKENS_PER_SECOND (module docstring).
        self._first_token_seconds = timeout_seconds
        self._deadline_seconds = timeout_seconds + max_output_tokens / MIN_TOKENS_PER_SECOND
        # The SDK tells Google to give up after the HTTP timeout (X-Server-Timeout, in
        # whole seconds) unless the request carries the header already: a stream gets
        # its whole deadline, or Google would cut long answers at the HTTP timeout.
        self._stream_http = types.HttpOptions(
            headers={"X-Server-Timeout": str(math.ceil(self._deadline_seconds))}
        )
        self._breaker = breaker
        self._wait = wait_exponential_jitter(
            initial=backoff_initial_seconds,
            max=backoff_max_seconds,
            jitter=backoff_jitter_seconds,
        )
        # httpx2, never aiohttp: GeminiStream closes responses through this hook.
        self._http = httpx_client([remember_response])
        self._client = genai.Client(
            vertexai=False,  # never switched to Vertex AI by GOOGLE_GENAI_USE_VERTEXAI
            api_key=api_key,
            http_options=types.HttpOptions(
                base_url=base_url,  # None keeps the SDK's endpoint
                timeout=max(1, round(timeout_seconds * 1000)),  # milliseconds
                retry_options=types.HttpRetryOptions(attempts=1),  # retries are ours
                httpx_async_client=self._http,
            ),
        )

    async def aclose(self) -> None:
        """Close the SDK's connection pools."""
        await self._client.aio.aclose()
        self._client.close()
        await self._http.aclose()

    async def stream(self, request: AnswerRequest) -> AsyncGenerator[GenerationEvent, None]:
        permit = self._breaker.allow(self._deadline_seconds + LEASE_MARGIN_SECONDS)
        if permit is None:
            log.warning("llm.failed", generator=self.name, reason="breaker_open", attempts=0)
            raise GenerationFailed("Gemini is failing; its circuit breaker is open for now.")
        prompt = build_answer_prompt(request)
        config = self._config(
            prompt.system_instruction, ANSWER_TEMPERATURE, http_options=self._stream_http
        )
        started = time.monotonic()
        deadline = asyncio.get_running_loop().time() + self._deadline_seconds
        verdict: Callable[[], None] = permit.release  # cancelled: no verdict
        stream: GeminiStream | None = None
        deltas = 0
        finished = False
        try:
            stream, text = await self._open(prompt.user_text, config, deadline)
            if text is not None:
                # Gemini is answering: a half-open breaker closes now, not when this
                # answer ends, so answers meanwhile are not degraded. The verdict is
                # still to come: a fault later in this stream counts against Gemini.
                permit.responding()
            while text is not None:
                if text:
                    deltas += 1
                    yield TextDelta(text)
                text = await stream.next_text()
            stream.check_complete()
            # Even if the caller stops reading now, or the model gave no text (below):
            # a stream that finished says Gemini is up.
            verdict = permit.success
            finished = True
            complete = stream.finish_reason == types.FinishReason.STOP
            reason = finish_reason_name(stream.finish_reason)
            if not complete:
                # MAX_TOKENS (thinking models spend the allowance too), SAFETY, ...
                log.warning(
                    "llm.incomplete", generator=self.name, finish_reason=reason, deltas=deltas
                )
            if deltas == 0:
                # Nothing to show, even after a STOP (a model that only thought): the
                # fallback answers instead of an empty message stored, and cached, as done.
                raise Fault(f"Gemini stopped with no answer ({reason})", "rejected", None, reason)
            if not complete:
                yield TextDelta(incomplete_note(reason))
            usage = stream.usage
            yield GenerationFinished(
                model=self.name,
                prompt_tokens=usage.prompt_token_count if usage else None,
                completion_tokens=output_tokens(usage),
                complete=complete,
            )
        except Fault as fault:
            if not finished:
                verdict = _verdict(permit, fault)
            log.warning(
                "llm.failed",
                generator=self.name,
                reason=fault.kind,
                status=fault.status,
                error=fault.error,
                streamed=deltas > 0,  # not "*_token": the log scrubber hides those
                deltas=deltas,
                attempts=stream.attempts if stream is not None else fault.attempts,
                ms=round((time.monotonic() - started) * 1000, 1),
            )
            raise GenerationFailed(str(fault)) from fault
        finally:
            # The verdict first: closing awaits, and a second cancellation (a client gone,
            # then a shutdown) landing there must not lose the breaker's half-open trial.
            verdict()
            if stream is not None:
                await stream.close()

    async def condense(self, history: Sequence[Turn], question: str) -> str:
        if not any(turn.role is MessageRole.USER for turn in history):
            return question
        if not needs_context(question):
            return question
        leash = min(CONDENSE_TIMEOUT_SECONDS, self._idle)
        permit = self._breaker.allow(leash + LEASE_MARGIN_SECONDS)
        if permit is None:
            log.info("llm.condense_fallback", generator=self.name, reason="breaker_open")
            return condense_locally(history, question)
        prompt = build_condense_prompt(history, question)
        config = self._config(
            prompt.system_instruction, CONDENSE_TEMPERATURE, condense_thinking(self._model)
        )
        verdict: Callable[[], None] = permit.release
        deadline = asyncio.timeout(leash)
        try:
            async with deadline:
                response = await self._client.aio.models.generate_content(
                    model=self._model, contents=prompt.user_text, config=config
                )
            verdict = permit.success
        except Exception as exc:
            if deadline.expired():
                # Our own short leash, kept for the answer's latency, says nothing about
                # Gemini's health: no failure counted, a half-open trial handed back.
                log.info("llm.condense_fallback", generator=self.name, reason="deadline")
                return condense_locally(history, question)
            fault = classify(exc, self._model)
            verdict = _verdict(permit, fault)
            log.warning(
                "llm.condense_fallback",
                generator=self.name,
                reason=fault.kind,
                status=fault.status,
                error=fault.error,
            )
            return condense_locally(history, question)
        finally:
            verdict()
        _count_condense_tokens(response.usage_metadata)
        candidate = response.candidates[0] if response.candidates else None
        rewritten = text_of(candidate).strip() if candidate is not None else ""
        if not rewritten:
            log.info("llm.condense_fallback", generator=self.name, reason="empty")
            return condense_locally(history, question)
        finish = candidate.finish_reason if candidate is not None else None
        if finish != types.FinishReason.STOP:
            # Cut off (MAX_TOKENS, SAFETY, ...): half a question retrieves the wrong sources.
            log.info(
                "llm.condense_fallback",
                generator=self.name,
                reason="incomplete",
                finish_reason=finish_reason_name(finish),
            )
            return condense_locally(history, question)
        return rewritten[: 2 * len(question) + 200]

    async def _open(
        self, contents: str, config: types.GenerateContentConfig, deadline: float
    ) -> tuple[GeminiStream, str | None]:
        """A stream and its first text (None: it finished with none), retrying until then,
        within the first-token budget."""
        budget = asyncio.timeout(self._first_token_seconds)
        try:
            async with budget:
                return await self._open_retrying(contents, config, deadline)
        except TimeoutError as exc:
            if not budget.expired():
                raise
            raise Fault(
                f"Gemini sent no answer within {self._first_token_seconds:g}s "
                "(FOUNDRY_GEMINI_TIMEOUT_SECONDS)",
                "transient",
                None,
                "FirstTokenTimeout",
            ) from exc

    async def _open_retrying(
        self, contents: str, config: types.GenerateContentConfig, deadline: float
    ) -> tuple[GeminiStream, str | None]:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._max_attempts),
            wait=self._wait,
            retry=retry_if_exception(
                lambda exc: isinstance(exc, Fault) and exc.kind == "transient"
            ),
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    stream, text = await self._first_text(contents, config, deadline)
                    stream.attempts = attempt.retry_state.attempt_number
                    return stream, text
        except Fault as fault:
            fault.attempts = retrying.statistics.get("attempt_number", 1)
            raise
        raise AssertionError("tenacity returns or raises")  # pragma: no cover

    async def _first_text(
        self, contents: str, config: types.GenerateContentConfig, deadline: float
    ) -> tuple[GeminiStream, str | None]:
        try:
            chunks = await self._client.aio.models.generate_content_stream(
                model=self._model, contents=contents, config=config
            )
        except Exception as exc:
            raise classify(exc, self._model) from exc
        stream = GeminiStream(chunks, self._idle, self._model, deadline)
        try:
            while (text := await stream.next_text()) is not None:
                if text:
                    return stream, text
            stream.check_complete()  # an answer with no text at all still finished
        except BaseException:
            await stream.close()
            raise
        return stream, None

    def _config(
        self,
        system_instruction: str,
        temperature: float,
        thinking: types.ThinkingConfig | None = None,
        http_options: types.HttpOptions | None = None,
    ) -> types.GenerateContentConfig:
        return types.GenerateContentConfig(
            http_options=http_options,
            system_instruction=system_instruction,
            temperature=temperature,
            # Thinking models count their thoughts against this too (an answer thinks
            # as the model decides), so the rewrite keeps an answer's allowance.
            max_output_tokens=self._max_output_tokens,
            thinking_config=thinking,
            # The SDK would otherwise re-request on its own after a CONTINUATION.
            automatic_continuation=False,
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        )

    def _log_retry(self, state: RetryCallState) -> None:
        failure = state.outcome.exception() if state.outcome is not None else None
        log.warning(
            "llm.retry",
            generator=self.name,
            attempt=state.attempt_number,
            status=failure.status if isinstance(failure, Fault) else None,
            error=failure.error if isinstance(failure, Fault) else None,
            wait_s=round(state.next_action.sleep, 3) if state.next_action is not None else None,
        )


def output_tokens(usage: types.GenerateContentResponseUsageMetadata | None) -> int | None:
    """The tokens the model wrote, thoughts included (billed as output); None if unknown."""
    if usage is None:
        return None
    answer, thoughts = usage.candidates_token_count, usage.thoughts_token_count
    if answer is None and thoughts is None:
        return None
    return (answer or 0) + (thoughts or 0)


def _count_condense_tokens(usage: types.GenerateContentResponseUsageMetadata | None) -> None:
    # Not in kind="prompt"/"completion", which add up the stored answers' usage.
    prompt = usage.prompt_token_count if usage is not None else None
    if prompt:
        ANSWER_TOKENS.labels("condense_prompt").inc(prompt)
    if written := output_tokens(usage):
        ANSWER_TOKENS.labels("condense_completion").inc(written)


def _verdict(permit: Permit, fault: Fault) -> Callable[[], None]:
    # A refused request says the provider is up and the request (or a setting) is
    # wrong: it neither opens the breaker nor closes it.
    return permit.release if fault.kind == "rejected" else permit.failure
