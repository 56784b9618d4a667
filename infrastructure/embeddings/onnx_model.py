"""MiniLM run by ONNX Runtime: the exported file, cached per machine, and its encoder.

The export (onnx_export.py) runs once, in a child process, and lands in the model cache
under a name derived from the weights' digest, so a new model package is exported anew
and processes starting together export it once (a file lock). The encoder gives the
same vectors as sentence-transformers (cosine ≥ 0.9999, checked at export and in the
tests), so vectors stored by either runtime are searched by the other unchanged.
"""

from __future__ import annotations

import fcntl
import hashlib
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt
import structlog
from tokenizers import Tokenizer as HfTokenizer

from infrastructure.embeddings.int8_products import int8_products_saturate
from infrastructure.embeddings.length_batches import length_batches
from infrastructure.embeddings.onnx_export import INPUT_NAMES, MAX_TOKENS, OUTPUT_NAME
from infrastructure.embeddings.onnx_quantize import REDUCE_RANGE

log = structlog.get_logger("foundry.embeddings")

# Bumped when the export changes (inputs, pooling, opset): older files are not reused.
EXPORT_FORMAT = 1
EXPORT_MODULE = "infrastructure.embeddings.onnx_export"
QUANTIZE_MODULE = "infrastructure.embeddings.onnx_quantize"
# Bumped when the quantisation changes, like EXPORT_FORMAT for the export.
QUANTIZE_FORMAT = 2
EXPORT_TIMEOUT_SECONDS = 600

Int64Matrix = npt.NDArray[np.int64]


class _Session(Protocol):
    def run(
        self, output_names: list[str], input_feed: dict[str, Int64Matrix]
    ) -> list[npt.NDArray[np.float32]]: ...


def weights_digest(model_dir: Path) -> str:
    digest = hashlib.sha256(f"format {EXPORT_FORMAT}\n".encode())
    for name in ("config.json", "model.safetensors"):
        with (model_dir / name).open("rb") as file:
            digest.update(hashlib.file_digest(file, "sha256").digest())
    return digest.hexdigest()[:20]


def ensure_exported(model_dir: Path, cache_dir: Path, model_name: str) -> Path:
    """The exported model for these weights, exporting it first if the cache lacks it."""
    path = cache_dir / f"{model_name}-{weights_digest(model_dir)}.onnx"
    command = [sys.executable, "-m", EXPORT_MODULE, str(model_dir), str(path)]
    return _ensure_made(path, command, f"exporting {model_name} to ONNX", "export", "exported")


def ensure_quantized(model_dir: Path, cache_dir: Path, model_name: str) -> Path:
    """The int8 copy of the exported model (onnx_quantize.py), made first if missing; with
    7-bit weights (a name of its own) where this CPU's int8 products saturate."""
    source = ensure_exported(model_dir, cache_dir, model_name)
    reduced = int8_products_saturate()
    path = quantized_path(source, reduced)
    command = [sys.executable, "-m", QUANTIZE_MODULE, str(model_dir), str(source), str(path)]
    if reduced:
        command.append(REDUCE_RANGE)
    return _ensure_made(path, command, f"quantising {model_name} to int8", "quantize", "quantized")


def quantized_path(exported: Path, reduced: bool) -> Path:
    """Where the int8 copy of ``exported`` is kept (``reduced``, 7-bit weights: "r")."""
    variant = "r" if reduced else ""
    return exported.with_name(f"{exported.stem}-int8q{QUANTIZE_FORMAT}{variant}.onnx")


def _ensure_made(path: Path, command: list[str], what: str, step: str, done_step: str) -> Path:
    """``path``, made by ``command`` in a child process unless it exists; one process makes
    it while the others starting at the same time wait for it (a file lock)."""
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with (path.parent / ".export.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if path.is_file():  # another process made it while this one waited
            return path
        log.info(f"embeddings.onnx_{step}_started", path=str(path))
        started = time.monotonic()
        done = subprocess.run(  # noqa: S603 (this interpreter, our module, our paths)
            command,
            capture_output=True,
            text=True,
            timeout=EXPORT_TIMEOUT_SECONDS,
            check=False,
        )
        if done.returncode != 0 or not path.is_file():
            tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
            raise RuntimeError(f"{what} failed: {' | '.join(tail)}")
        log.info(
            f"embeddings.onnx_{done_step}",
            path=str(path),
            seconds=round(time.monotonic() - started, 1),
            check=done.stdout.strip(),
        )
    return path


class OnnxEncoder:
    """Tokenise, batch by length (little padding), run, and return unit vectors."""

    def __init__(self, model_path: Path, model_dir: Path, threads: int, batch_size: int) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Pool threads (threads > 1: workers) sleep between operations instead of spinning
        # on cores that PostgreSQL, the API and the worker's other threads need: the model
        # alone runs ~20 % faster spinning, the whole ingestion pipeline no faster.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session: _Session = onnxruntime.InferenceSession(
            str(model_path), options, providers=["CPUExecutionProvider"]
        )
        self._tokenizer = HfTokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._tokenizer.no_padding()
        self._batch_size = batch_size

    def encode(self, texts: Sequence[str]) -> list[list[float]]:
        token_ids = [encoding.ids for encoding in self._tokenizer.encode_batch(list(texts))]
        # Longest first, then cut where padding would cost more than another run.
        order = sorted(range(len(token_ids)), key=lambda index: -len(token_ids[index]))
        lengths = [len(token_ids[index]) for index in order]
        vectors: list[list[float]] = [[] for _ in token_ids]
        for positions in length_batches(lengths, self._batch_size):
            batch = order[positions.start : positions.stop]
            width = lengths[positions.start]
            ids = np.zeros((len(batch), width), dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.int64)
            for row, index in enumerate(batch):
                count = len(token_ids[index])
                ids[row, :count] = token_ids[index]
                mask[row, :count] = 1
            feed = dict(zip(INPUT_NAMES, (ids, mask), strict=True))
            output = self._session.run([OUTPUT_NAME], feed)[0]
            for row, index in enumerate(batch):
                vectors[index] = output[row].tolist()
        return vectors
