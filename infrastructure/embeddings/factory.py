from __future__ import annotations

from domain.ingestion.ports import Embedder
from infrastructure.answers.circuit_breaker import CircuitBreaker
from infrastructure.embeddings.gemini import GeminiEmbedder
from infrastructure.embeddings.local import LocalEmbedder
from infrastructure.settings import Settings


def build_embedder(settings: Settings) -> Embedder:
    """The configured embedder; its dimension must match the chunks column."""
    embedder: Embedder
    if settings.embedder == "gemini":
        key = settings.gemini_api_key
        embedder = GeminiEmbedder(
            key.get_secret_value() if key is not None else "",  # refused with the setting's name
            model=settings.gemini_embedding_model,
            dimensions=settings.embedding_dimensions,
            base_url=settings.gemini_base_url,
            timeout_seconds=settings.gemini_timeout_seconds,
            max_attempts=settings.gemini_max_attempts,
            query_max_attempts=settings.gemini_query_max_attempts,
            query_deadline_seconds=settings.gemini_query_deadline_seconds,
            query_breaker=CircuitBreaker(
                "gemini-embeddings",
                failure_threshold=settings.llm_breaker_failure_threshold,
                reset_seconds=settings.llm_breaker_reset_seconds,
            ),
        )
    else:
        embedder = build_local_embedder(settings)
    if embedder.dimensions != settings.embedding_dimensions:
        raise RuntimeError(
            f"FOUNDRY_EMBEDDING_DIMENSIONS={settings.embedding_dimensions} but {embedder.name} "
            f"produces {embedder.dimensions}"
        )
    return embedder


def build_local_embedder(settings: Settings) -> LocalEmbedder:
    return LocalEmbedder(
        threads=settings.torch_threads,
        batch_size=settings.embed_batch_size,
        runtime=settings.embedding_runtime,
        cache_dir=settings.model_cache_dir,
        query_precision=settings.embedding_query_precision,
    )
