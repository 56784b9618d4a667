"""The local embedder's two runtimes: ONNX (exported once, cached) and torch give one model."""

from __future__ import annotations

import logging
import math
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from infrastructure.embeddings import onnx_model
from infrastructure.embeddings.int8_products import int8_products_saturate
from infrastructure.embeddings.local import MODEL_NAME, LocalEmbedder, bundled_model_dir
from infrastructure.embeddings.onnx_model import (
    OnnxEncoder,
    ensure_exported,
    ensure_quantized,
    quantized_path,
)

TEXTS = [
    "",
    "reset password",
    "How do I rotate the signing keys without logging everybody out?",
    "Les données sont chiffrées au repos — 東京で会いましょう. ¿Dónde está la estación? 🙂",
    # Longer than the model's 256 tokens: both runtimes keep the first 256.
    " ".join(
        f"clause {n} of the retention policy keeps invoices for seven years." for n in range(80)
    ),
    "Invoices are kept for seven years.",
    "The cluster failed over to the standby at 03:12 UTC.",
    "x",
]


def _largest_difference(a: list[float], b: list[float]) -> float:
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("model-cache")


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def export_logs() -> list[str]:
    return []


@pytest.fixture(scope="module")
def exported(cache_dir: Path, export_logs: list[str]) -> Path:
    """Two threads ask for the export at once, like an API and a worker starting together."""
    records = _Records()
    logging.getLogger().addHandler(records)
    found: list[Path] = []
    threads = [
        threading.Thread(
            target=lambda: found.append(ensure_exported(bundled_model_dir(), cache_dir, MODEL_NAME))
        )
        for _ in range(2)
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=600)
    finally:
        logging.getLogger().removeHandler(records)
    export_logs.extend(records.messages)
    assert len(found) == 2 and found[0] == found[1]
    return found[0]


def test_the_export_runs_once_for_concurrent_callers(
    exported: Path, cache_dir: Path, export_logs: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    assert sum("embeddings.onnx_export_started" in m for m in export_logs) == 1
    assert exported.is_file() and exported.stat().st_size > 80_000_000  # fp32 weights
    assert sorted(p.name for p in cache_dir.iterdir()) == [".export.lock", exported.name]
    before = exported.stat().st_mtime_ns
    embedder = LocalEmbedder(threads=1, cache_dir=cache_dir)
    embedder.warm_up()
    assert exported.stat().st_mtime_ns == before  # reused, not exported again
    assert "onnx_export_started" not in caplog.text


async def test_onnx_gives_the_vectors_torch_gives(exported: Path, cache_dir: Path) -> None:
    # A batch size of 3 makes several batches of mixed lengths, sorted and put back in order.
    onnx = LocalEmbedder(threads=1, batch_size=3, runtime="onnx", cache_dir=cache_dir)
    torch = LocalEmbedder(threads=1, batch_size=3, runtime="torch", cache_dir=cache_dir)
    got = await onnx.embed_documents(TEXTS)
    expected = await torch.embed_documents(TEXTS)
    assert len(got) == len(TEXTS)
    for text, vector, reference in zip(TEXTS, got, expected, strict=True):
        assert len(vector) == 384
        assert _cosine(vector, reference) > 0.9999, text[:40]
        assert math.isclose(math.sqrt(sum(x * x for x in vector)), 1.0, rel_tol=1e-4)
    # Queries go through the same model, one at a time or batched.
    single = await onnx.embed_query(TEXTS[2])
    assert _cosine(single, expected[2]) > 0.9999
    assert _cosine(got[5], got[4]) < 0.9  # different texts stay different


async def test_a_damaged_cache_file_is_exported_again(
    tmp_path: Path, exported: Path, caplog: pytest.LogCaptureFixture
) -> None:
    damaged = tmp_path / exported.name
    damaged.write_bytes(b"not an onnx model")
    embedder = LocalEmbedder(threads=1, cache_dir=tmp_path)
    vector = await embedder.embed_query("reset password")
    assert len(vector) == 384
    assert "embeddings.onnx_cache_unreadable" in caplog.text
    assert damaged.stat().st_size > 80_000_000


def test_a_failed_export_says_why_and_leaves_nothing(tmp_path: Path) -> None:
    broken = tmp_path / "model"
    shutil.copytree(bundled_model_dir(), broken)
    (broken / "model.safetensors").write_bytes(b"\0" * 1024)
    cache = tmp_path / "cache"
    with pytest.raises(RuntimeError, match="exporting all-MiniLM-L6-v2 to ONNX failed"):
        ensure_exported(broken, cache, MODEL_NAME)
    assert [p.name for p in cache.iterdir()] == [".export.lock"]


def test_an_api_process_embeds_without_importing_torch(exported: Path, cache_dir: Path) -> None:
    script = (
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "from infrastructure.embeddings.local import LocalEmbedder\n"
        f"embedder = LocalEmbedder(threads=1, cache_dir=Path({str(cache_dir)!r}),\n"
        "                         query_precision='int8')\n"
        "vector = asyncio.run(embedder.embed_query('reset password'))\n"
        "print(len(vector), 'torch' in sys.modules, 'sentence_transformers' in sys.modules,\n"
        "      'onnxruntime.quantization' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    # (Before it: the log lines of quantising, when this module's cache has no int8 file yet.)
    assert done.stdout.splitlines()[-1].split() == ["384", "False", "False", "False"]


async def test_questions_can_go_through_an_int8_copy_close_to_the_float_model(
    exported: Path, cache_dir: Path
) -> None:
    exact = LocalEmbedder(threads=1, cache_dir=cache_dir)
    cheap = LocalEmbedder(threads=1, cache_dir=cache_dir, query_precision="int8")
    cheap.warm_up(queries=True)  # quantised once, into the same cache, beside the export
    quantized = ensure_quantized(bundled_model_dir(), cache_dir, MODEL_NAME)
    assert quantized.parent == cache_dir and quantized != exported
    assert 15_000_000 < quantized.stat().st_size < 40_000_000  # int8 weights, not fp32
    questions = [*TEXTS[1:4], "What is the retention period for invoices?"]
    expected = await exact.embed_queries(questions)
    got = await cheap.embed_queries(questions)
    for text, vector, reference in zip(questions, got, expected, strict=True):
        assert 0.97 < _cosine(vector, reference) < 0.99999, text[:40]  # close, not the same
        assert math.isclose(math.sqrt(sum(x * x for x in vector)), 1.0, rel_tol=1e-4)
    # A question's vector does not depend on what it is batched with (int8 activations
    # are scaled per token), and answer sentences go through the same model.
    alone = [(await cheap.embed_sentences([text]))[0] for text in questions]
    together = await cheap.embed_sentences(questions)
    for text, vector, single, batched in zip(questions, got, alone, together, strict=True):
        assert _largest_difference(single, vector) < 1e-6, text[:40]
        assert _largest_difference(batched, single) < 1e-6, text[:40]
    # Documents, whose vectors are stored, still go through the float model.
    assert await cheap.embed_documents(questions) == await exact.embed_documents(questions)
    # The nearest passage stays the same.
    passages = await exact.embed_documents(TEXTS[5:7])
    invoice = got[-1]
    assert _cosine(invoice, passages[0]) > _cosine(invoice, passages[1])


def test_int8_vectors_do_not_depend_on_the_batch(cache_dir: Path) -> None:
    """Eight questions in one padded model run get the vectors they get one by one."""
    quantized = ensure_quantized(bundled_model_dir(), cache_dir, MODEL_NAME)
    questions = [
        "How do I reset my password?",
        "What is the retention period for invoices?",
        "Who can see the documents of my organisation?",
        "Why was the upload of my report refused?",
        "When do access tokens expire?",
        "Where are the embeddings stored?",
        "How are answers cited?",
        "Can I search in one document only?",
    ]
    batched = OnnxEncoder(quantized, bundled_model_dir(), 1, 8).encode(questions)
    one_by_one = OnnxEncoder(quantized, bundled_model_dir(), 1, 1)
    for question, vector in zip(questions, batched, strict=True):
        assert _largest_difference(one_by_one.encode([question])[0], vector) < 1e-6, question


async def test_the_torch_runtime_embeds_questions_in_float(cache_dir: Path) -> None:
    torch = LocalEmbedder(threads=1, runtime="torch", cache_dir=cache_dir, query_precision="int8")
    question = TEXTS[2]
    assert await torch.embed_query(question) == (await torch.embed_documents([question]))[0]


async def test_a_damaged_int8_file_is_quantised_again(
    tmp_path: Path, exported: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shutil.copy(exported, tmp_path / exported.name)
    damaged = quantized_path(tmp_path / exported.name, int8_products_saturate())
    damaged.write_bytes(b"not an onnx model")
    embedder = LocalEmbedder(threads=1, cache_dir=tmp_path, query_precision="int8")
    assert len(await embedder.embed_query("reset password")) == 384
    assert "embeddings.onnx_cache_unreadable" in caplog.text
    assert "embeddings.onnx_quantized" in caplog.text
    assert damaged.stat().st_size > 15_000_000


async def test_questions_fall_back_to_float_when_the_int8_copy_cannot_be_made(
    tmp_path: Path,
    exported: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    shutil.copy(exported, tmp_path / exported.name)
    monkeypatch.setattr(onnx_model, "QUANTIZE_MODULE", "infrastructure.embeddings.no_such_module")
    embedder = LocalEmbedder(threads=1, cache_dir=tmp_path, query_precision="int8")
    question = "How do I rotate the signing keys?"
    vector = await embedder.embed_query(question)
    assert vector == (await embedder.embed_documents([question]))[0]  # the float model
    assert "embeddings.int8_unavailable" in caplog.text
    assert "quantising all-MiniLM-L6-v2 to int8 failed" in caplog.text
