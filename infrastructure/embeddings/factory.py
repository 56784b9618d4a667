from __future__ import annotations

from domain.ingestion.ports import Embedder
from infrastructure.embeddings.local import LocalEmbedder
from infrastructure.settings import Settings


def build_embedder(settings: Settings) -> Embedder:
    """The configured embedder; its dimension must match the chunks column."""
    embedder = LocalEmbedder(threads=settings.torch_threads, batch_size=settings.embed_batch_size)
    if embedder.dimensions != settings.embedding_dimensions:
        raise RuntimeError(
            f"FOUNDRY_EMBEDDING_DIMENSIONS={settings.embedding_dimensions} but {embedder.name} "
            f"produces {embedder.dimensions}"
        )
    return embedder
