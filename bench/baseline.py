"""The baseline a user would otherwise pick: LangChain's RecursiveCharacterTextSplitter and
Chroma (embedded, on disk), with the same embedding model as Knowledge Foundry.

Its packages are the `bench` extra, installed only in .venv-bench (`make bench-install`);
without them `available()` is False and the scripts say the baseline was not run. Chroma's
default embedding function (an ONNX model it would download) is never used: the collection
has no embedding function and gets our embedder's vectors.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from infrastructure.embeddings.local import LocalEmbedder

# The splitter settings of LangChain's own retrieval tutorials (characters, not tokens);
# 1,000 characters (~220 MiniLM tokens) fit the model's 256-token window.
CHUNK_SIZE = 1_000
CHUNK_OVERLAP = 200


def available() -> bool:
    return all(
        importlib.util.find_spec(name) is not None
        for name in ("langchain_text_splitters", "chromadb")
    )


@dataclass
class BaselineIngest:
    chunks: int = 0
    seconds: float = 0.0
    split_seconds: float = 0.0
    embed_seconds: float = 0.0
    store_seconds: float = 0.0

    @property
    def chunks_per_s(self) -> float:
        return self.chunks / self.seconds if self.seconds else 0.0


class ChromaBaseline:
    """One Chroma collection (cosine HNSW) in ``directory``; documents are (name, text)."""

    def __init__(self, embedder: LocalEmbedder, directory: Path) -> None:
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        self._embedder = embedder
        self._client = chromadb.PersistentClient(
            path=str(directory), settings=ChromaSettings(anonymized_telemetry=False)
        )
        self._collection = self._client.create_collection(
            "bench", embedding_function=None, metadata={"hnsw:space": "cosine"}
        )

    async def ingest(self, documents: Sequence[tuple[str, str]]) -> BaselineIngest:
        """Split, embed (one call, as our embedder-alone figure does) and add."""
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        result = BaselineIngest()
        started = time.perf_counter()
        splitter = RecursiveCharacterTextSplitter(
            chunk_size=CHUNK_SIZE, chunk_overlap=CHUNK_OVERLAP
        )
        texts: list[str] = []
        names: list[str] = []
        for name, body in documents:
            pieces = splitter.split_text(body)
            texts += pieces
            names += [name] * len(pieces)
        split = time.perf_counter()
        vectors = await self._embedder.embed_documents(texts)
        embedded = time.perf_counter()
        step = self._client.get_max_batch_size()
        for offset in range(0, len(texts), step):
            end = offset + step
            rows: list[Sequence[float]] = list(vectors[offset:end])
            self._collection.add(
                ids=[str(i) for i in range(offset, min(end, len(texts)))],
                embeddings=rows,
                documents=texts[offset:end],
                metadatas=[{"name": name} for name in names[offset:end]],
            )
        finished = time.perf_counter()
        result.chunks = len(texts)
        result.split_seconds = split - started
        result.embed_seconds = embedded - split
        result.store_seconds = finished - embedded
        result.seconds = finished - started
        return result

    def search(self, query_embedding: Sequence[float], k: int) -> list[str]:
        """Names of the documents of the ``k`` nearest chunks, best first (repeats kept)."""
        queries: list[Sequence[float]] = [query_embedding]
        found = self._collection.query(query_embeddings=queries, n_results=k, include=["metadatas"])
        metadatas = found["metadatas"] or [[]]
        return [str(metadata["name"]) for metadata in metadatas[0]]
