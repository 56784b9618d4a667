"""Metrics and logs of retrieval (per stage) and answering (first token, totals, fallbacks)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import structlog
from prometheus_client import Counter, Histogram

log = structlog.get_logger("foundry.answers")

_FAST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
_SLOW_BUCKETS = (0.05, 0.1, 0.15, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60)

RETRIEVAL_SECONDS = Histogram(
    "foundry_retrieval_stage_seconds",
    "Time spent in each retrieval stage (embed, vector, fulltext, fusion, total).",
    ["stage"],
    buckets=_FAST_BUCKETS,
)
RETRIEVAL_HITS = Histogram(
    "foundry_retrieval_stage_hits",
    "Chunks each retrieval stage returned.",
    ["stage"],
    buckets=(0, 1, 2, 5, 10, 20, 50, 100),
)
ANSWER_FIRST_TOKEN = Histogram(
    "foundry_answer_first_token_seconds",
    "Time from the question to the first answer token.",
    ["generator"],
    buckets=_SLOW_BUCKETS,
)
ANSWER_SECONDS = Histogram(
    "foundry_answer_seconds",
    "Time from the question to the stored answer.",
    ["generator", "degraded"],
    buckets=_SLOW_BUCKETS,
)
ANSWER_TOKENS = Counter(
    "foundry_answer_tokens_total", "Tokens read and written by answer generators.", ["kind"]
)
ANSWER_FALLBACKS = Counter(
    "foundry_answer_fallbacks_total",
    "Answers the extractive answerer gave because the language model failed.",
    ["reason"],
)
ANSWER_UNKNOWN_CITATIONS = Counter(
    "foundry_answer_unknown_citations_total",
    "Answers that cite a source number they were not given (stored as written).",
    ["generator"],
)
ANSWER_OUTCOMES = Counter(
    "foundry_answer_outcomes_total",
    "Answers by outcome (done, cancelled, error code).",
    ["outcome"],
)

ANSWER_CACHE = Counter(
    "foundry_answer_cache_lookups_total",
    "Answer-cache lookups by result: exact or semantic hit, or miss.",
    ["result"],
)


class PrometheusRetrievalObserver:
    """Five stages per search: each stage's two series are looked up once, not per call."""

    def __init__(self) -> None:
        self._series: dict[str, tuple[Histogram, Histogram]] = {}

    def stage(self, name: str, seconds: float, hits: int) -> None:
        series = self._series.get(name)
        if series is None:
            series = RETRIEVAL_SECONDS.labels(name), RETRIEVAL_HITS.labels(name)
            self._series[name] = series
        series[0].observe(seconds)
        series[1].observe(hits)
        if name == "total" and log.isEnabledFor(logging.DEBUG):  # a dropped line costs too
            log.debug("retrieval.done", ms=round(seconds * 1000, 2), hits=hits)


class PrometheusAnswerObserver:
    def retrieval(self, seconds: float, sources: int) -> None:
        log.info("answer.retrieved", ms=round(seconds * 1000, 1), sources=sources)

    def first_token(self, generator: str, seconds: float) -> None:
        ANSWER_FIRST_TOKEN.labels(generator).observe(seconds)

    def finished(
        self,
        generator: str,
        seconds: float,
        prompt_tokens: int | None,
        completion_tokens: int | None,
        degraded: bool,
    ) -> None:
        ANSWER_SECONDS.labels(generator, str(degraded).lower()).observe(seconds)
        if prompt_tokens:
            ANSWER_TOKENS.labels("prompt").inc(prompt_tokens)
        if completion_tokens:
            ANSWER_TOKENS.labels("completion").inc(completion_tokens)
        log.info(
            "answer.finished",
            generator=generator,
            ms=round(seconds * 1000, 1),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            degraded=degraded,
        )

    def fallback(self, reason: str) -> None:
        ANSWER_FALLBACKS.labels(reason).inc()
        log.warning("answer.fallback", reason=reason)

    def unknown_citations(self, generator: str, cited: Sequence[int], sources: int) -> None:
        ANSWER_UNKNOWN_CITATIONS.labels(generator).inc()
        log.warning(
            "answer.unknown_citations", generator=generator, cited=list(cited), sources=sources
        )

    def outcome(self, outcome: str) -> None:
        ANSWER_OUTCOMES.labels(outcome).inc()

    def cache(self, result: str) -> None:
        ANSWER_CACHE.labels(result).inc()
        if result != "miss":
            log.info("answer.cache_hit", kind=result)
