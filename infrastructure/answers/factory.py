"""The configured answer generator, and the offline one it falls back to."""

from __future__ import annotations

from domain.answers.ports import AnswerGenerator
from domain.ingestion.ports import Embedder
from infrastructure.answers.circuit_breaker import CircuitBreaker
from infrastructure.answers.extractive import ExtractiveAnswerer, ExtractiveOptions
from infrastructure.answers.gemini import GeminiAnswerer
from infrastructure.settings import Settings


def build_answerers(
    settings: Settings, embedder: Embedder
) -> tuple[AnswerGenerator, AnswerGenerator | None]:
    """(primary, fallback): the extractive answerer needs no fallback; Gemini falls back to it."""
    extractive = ExtractiveAnswerer(
        embedder, ExtractiveOptions(max_chars=settings.extractive_max_chars)
    )
    if settings.answerer != "gemini":
        return extractive, None
    key = settings.gemini_api_key
    gemini = GeminiAnswerer(
        key.get_secret_value() if key is not None else "",  # refused with the setting's name
        model=settings.gemini_answer_model,
        base_url=settings.gemini_base_url,
        timeout_seconds=settings.gemini_timeout_seconds,
        stream_idle_seconds=settings.gemini_stream_idle_seconds,
        max_attempts=settings.gemini_max_attempts,
        max_output_tokens=settings.gemini_max_output_tokens,
        breaker=CircuitBreaker(
            "gemini",
            failure_threshold=settings.llm_breaker_failure_threshold,
            reset_seconds=settings.llm_breaker_reset_seconds,
        ),
    )
    return gemini, extractive
