"""Ingestion benchmark: the real pipeline (upload -> Dramatiq worker -> READY) against the
embedder alone on the same chunks, PDF latency on an idle worker, and worker memory.

Corpus: the Python language reference that ships inside every CPython
(`pydoc_data.topics`, ~465 kB of English prose, PSF licence), one document per topic.

    .venv/bin/python bench/ingest_bench.py            # full run (~5 minutes on 2 cores)
    .venv/bin/python bench/ingest_bench.py --size tiny  # smoke run

Prints a table and a JSON line. Needs Redis at FOUNDRY_BENCH_REDIS_URL (default the local
server) and starts its own embedded PostgreSQL in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from pydoc_data.topics import topics

import psutil
from fpdf import FPDF
from pydantic import SecretStr

from domain.entities import ParsedDocument, Principal, Role
from domain.ingestion.chunking import ChunkingOptions, chunk_document
from domain.ingestion.filetypes import FileKind
from domain.ingestion.ports import IncomingFile
from domain.services.accounts import RequestOrigin
from infrastructure.container import BackendUrls, Container
from infrastructure.database.migrate import upgrade_to_head
from infrastructure.embedded import EmbeddedPostgres
from infrastructure.embeddings.local import LocalEmbedder
from infrastructure.parsing.limits import ParseLimits
from infrastructure.parsing.parser import FileParser
from infrastructure.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"tiny": (6, 2, 12), "full": (79, 10, 200)}  # corpus docs, small PDF pages, big PDF pages


@dataclass
class Results:
    cores: int = field(default_factory=lambda: os.cpu_count() or 1)
    corpus_documents: int = 0
    corpus_chunks: int = 0
    corpus_tokens: int = 0
    embedder_chunks_per_s: float = 0.0
    pipeline_seconds: float = 0.0
    pipeline_docs_per_s: float = 0.0
    pipeline_chunks_per_s: float = 0.0
    pipeline_tokens_per_s: float = 0.0
    efficiency: float = 0.0
    stage_share: dict[str, float] = field(default_factory=dict)
    small_pdf_ready_seconds: list[float] = field(default_factory=list)
    big_pdf_pages: int = 0
    big_pdf_ready_seconds: float = 0.0
    worker_peak_rss_mb: float = 0.0


def corpus(count: int) -> list[tuple[str, str]]:
    names = sorted(topics, key=lambda name: -len(topics[name]))[:count]
    return [(f"{name}.txt", topics[name]) for name in names]


def pdf_of(pages: int) -> bytes:
    text = " ".join(topics[name] for name in sorted(topics))
    words = text.split()
    document = FPDF()
    document.set_font("Helvetica", size=10)
    per_page = 330
    for page in range(pages):
        document.add_page()
        chunk = " ".join(words[page * per_page : (page + 1) * per_page])
        document.multi_cell(0, 5, chunk.encode("latin-1", "replace").decode("latin-1"))
    return bytes(document.output())


def incoming(name: str, data: bytes) -> IncomingFile:
    stream = io.BytesIO(data)

    async def read(size: int) -> bytes:
        return stream.read(size)

    return IncomingFile(filename=name, content_type=None, read=read)


def embedder_alone(documents: list[tuple[str, str]], settings: Settings) -> tuple[float, int, int]:
    """Chunk exactly as the pipeline does, then time only the embedding."""
    embedder = LocalEmbedder(threads=settings.torch_threads, batch_size=settings.embed_batch_size)
    embedder.warm_up()
    parser = FileParser(ParseLimits())
    options = ChunkingOptions(settings.chunk_size_tokens, settings.chunk_overlap_tokens)
    texts: list[str] = []
    tokens = 0
    with tempfile.TemporaryDirectory() as scratch:
        for name, body in documents:
            path = Path(scratch) / name
            path.write_text(body, encoding="utf-8")
            parsed: ParsedDocument = parser.parse(path, FileKind.TEXT)
            drafts = chunk_document(parsed, embedder.tokenizer, options)
            texts += [d.text for d in drafts]
            tokens += sum(d.token_count for d in drafts)
    started = time.perf_counter()
    asyncio.run(embedder.embed_documents(texts))
    return len(texts) / (time.perf_counter() - started), len(texts), tokens


class RssSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.peak = 0
        self.running = True

    def run(self) -> None:
        while self.running:
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.05)


async def wait_ready(container: Container, principal: Principal, ids: list[uuid.UUID]) -> None:
    """Follow documentEvents (what clients do) instead of polling the database, so the
    benchmark takes no CPU from the worker it measures."""
    pending = set(ids)
    events = container.services.documents.watch(principal)
    waiter = asyncio.ensure_future(anext(events))
    try:
        while pending:
            # Re-check from the database now and then, in case an event came before we listened.
            done, _ = await asyncio.wait({waiter}, timeout=2)
            if waiter in done:
                event = waiter.result()
                waiter = asyncio.ensure_future(anext(events))
                documents = [event.document]
            else:
                documents = [
                    d
                    for i in pending
                    if (d := await container.services.documents.get(principal, i))
                ]
            for document in documents:
                if document.id in pending and document.status.value in ("ready", "failed"):
                    if document.status.value == "failed":
                        raise RuntimeError(f"{document.filename} failed: {document.error_code}")
                    pending.discard(document.id)
    finally:
        waiter.cancel()
        await events.aclose()  # type: ignore[attr-defined]


def scrape_stages(port: int) -> dict[str, float]:
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    sums: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("foundry_ingest_stage_seconds_sum"):
            stage = line.split('stage="')[1].split('"')[0]
            sums[stage] = float(line.rsplit(" ", 1)[1])
    total = sum(sums.values()) or 1.0
    return {stage: round(value / total, 3) for stage, value in sums.items()}


async def pipeline(settings: Settings, urls: BackendUrls, results: Results, size: str) -> None:
    doc_count, small_pages, big_pages = SIZES[size]
    documents = corpus(doc_count)
    metrics_port = 9187
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOUNDRY_")}
    env.update(
        {
            "FOUNDRY_DATABASE_URL": urls.database_url,
            "FOUNDRY_REDIS_URL": urls.redis_url,
            "FOUNDRY_STATE_DIR": str(settings.state_dir),
            "FOUNDRY_REDIS_KEY_PREFIX": settings.redis_key_prefix,
            "FOUNDRY_WORKER_METRICS_PORT": str(metrics_port),
            "FOUNDRY_LOG_LEVEL": "WARNING",
        }
    )
    log = (settings.state_dir / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "infrastructure.cli", "worker"],
        env=env,
        stdout=log,
        stderr=log,
        cwd=ROOT,
    )
    sampler = RssSampler(worker.pid)
    sampler.start()
    container = Container(settings, urls)
    try:
        await _wait_for_worker(metrics_port)
        session = await container.services.accounts.sign_up(
            f"bench-{uuid.uuid4().hex[:6]}@example.com", "bench password 123", None, RequestOrigin()
        )
        principal = Principal(session.user.id, session.organization.id, Role.ADMIN, uuid.uuid4())

        started = time.perf_counter()
        ids: list[uuid.UUID] = []
        for offset in range(0, len(documents), settings.upload_max_files):
            batch = documents[offset : offset + settings.upload_max_files]
            uploads = await container.services.documents.upload(
                principal, [incoming(name, body.encode()) for name, body in batch], ip=None
            )
            ids += [u.document.id for u in uploads if u.document]
        await wait_ready(container, principal, ids)
        results.pipeline_seconds = time.perf_counter() - started
        results.pipeline_docs_per_s = len(documents) / results.pipeline_seconds
        results.pipeline_chunks_per_s = results.corpus_chunks / results.pipeline_seconds
        results.pipeline_tokens_per_s = results.corpus_tokens / results.pipeline_seconds
        results.efficiency = results.pipeline_chunks_per_s / results.embedder_chunks_per_s
        results.stage_share = scrape_stages(metrics_port)

        for run in range(3):
            started = time.perf_counter()
            [small] = await container.services.documents.upload(
                principal,
                [incoming(f"small-{run}.pdf", pdf_of(small_pages) + f"%{run}".encode())],
                ip=None,
            )
            assert small.document is not None
            await wait_ready(container, principal, [small.document.id])
            results.small_pdf_ready_seconds.append(round(time.perf_counter() - started, 2))

        sampler.peak = 0
        started = time.perf_counter()
        [big] = await container.services.documents.upload(
            principal, [incoming("big.pdf", pdf_of(big_pages))], ip=None
        )
        assert big.document is not None
        await wait_ready(container, principal, [big.document.id])
        results.big_pdf_pages = big_pages
        results.big_pdf_ready_seconds = round(time.perf_counter() - started, 1)
        results.worker_peak_rss_mb = round(sampler.peak / 1024 / 1024, 1)
    finally:
        sampler.running = False
        worker.terminate()
        worker.wait(timeout=60)
        await container.aclose()


async def _wait_for_worker(port: int) -> None:
    import urllib.request

    for _ in range(600):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1)
            return
        except OSError:
            await asyncio.sleep(0.2)
    raise RuntimeError("worker did not start")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    args = parser.parse_args()
    results = Results()
    with tempfile.TemporaryDirectory(prefix="foundry-bench-") as state:
        redis_url = os.environ.get("FOUNDRY_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
        settings = Settings(
            _env_file=None,
            environment="test",
            state_dir=Path(state),
            redis_url=SecretStr(redis_url),
            redis_key_prefix=f"bench-{uuid.uuid4().hex[:6]}:",
            jwt_secret=SecretStr("bench-" + "k" * 40),
        )
        postgres = EmbeddedPostgres(Path(state), "bench")
        postgres.start()
        try:
            asyncio.run(postgres.ensure_database())
            urls = BackendUrls(postgres.sqlalchemy_url(), redis_url)
            upgrade_to_head(urls.database_url, settings.database_app_role)
            settings = settings.model_copy(update={"database_url": SecretStr(urls.database_url)})
            documents = corpus(SIZES[args.size][0])
            results.corpus_documents = len(documents)
            rate, chunks, tokens = embedder_alone(documents, settings)
            results.embedder_chunks_per_s = rate
            results.corpus_chunks, results.corpus_tokens = chunks, tokens
            asyncio.run(pipeline(settings, urls, results, args.size))
        finally:
            postgres.stop()
    report(results)


def report(results: Results) -> None:
    rows = [
        ("cores", results.cores),
        (
            "corpus documents / chunks / tokens",
            f"{results.corpus_documents} / {results.corpus_chunks} / {results.corpus_tokens}",
        ),
        ("embedder alone, chunks/s", f"{results.embedder_chunks_per_s:.1f}"),
        ("pipeline, chunks/s", f"{results.pipeline_chunks_per_s:.1f}"),
        ("pipeline, docs/s", f"{results.pipeline_docs_per_s:.2f}"),
        ("pipeline, tokens/s", f"{results.pipeline_tokens_per_s:.0f}"),
        ("pipeline efficiency (target >= 0.85)", f"{results.efficiency:.2f}"),
        (
            "worker time share per stage",
            ", ".join(f"{k} {v:.1%}" for k, v in results.stage_share.items()),
        ),
        (
            "small PDF upload->READY, s (target <= 3)",
            ", ".join(map(str, results.small_pdf_ready_seconds)),
        ),
        (f"{results.big_pdf_pages}-page PDF upload->READY, s", results.big_pdf_ready_seconds),
        ("worker peak RSS, MB (target < 1536)", results.worker_peak_rss_mb),
    ]
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label.ljust(width)}  {value}")
    payload = {
        **results.__dict__,
        "small_pdf_ready_median": statistics.median(results.small_pdf_ready_seconds or [0]),
    }
    print(json.dumps(payload))


if __name__ == "__main__":
    main()
