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
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from pydoc_data.topics import topics

import baseline
from common import (
    RssSampler,
    admin,
    backends,
    bench_settings,
    free_port,
    incoming,
    report,
    start_worker,
    stop,
    upload_all,
    wait_for_worker,
    wait_ready,
)
from fpdf import FPDF

from domain.entities import ParsedDocument
from domain.ingestion.chunking import ChunkingOptions, chunk_document
from domain.ingestion.filetypes import FileKind
from infrastructure.container import BackendUrls, Container
from infrastructure.embeddings.factory import build_local_embedder
from infrastructure.embeddings.local import LocalEmbedder
from infrastructure.parsing.limits import ParseLimits
from infrastructure.parsing.parser import FileParser
from infrastructure.settings import Settings

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
    size: str = ""
    baseline_chunks: int = 0  # LangChain + Chroma, 0 when not run
    baseline_chunks_per_s: float = 0.0
    baseline_stage_seconds: dict[str, float] = field(default_factory=dict)
    pipeline_over_baseline: float = 0.0


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


def embedder_alone(
    documents: list[tuple[str, str]], settings: Settings, embedder: LocalEmbedder
) -> tuple[float, int, int]:
    """Chunk exactly as the pipeline does, then time only the embedding."""
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


def langchain_chroma(
    documents: list[tuple[str, str]], embedder: LocalEmbedder, state: Path, results: Results
) -> None:
    """The same corpus through the LangChain splitter, the same model and Chroma."""
    if not baseline.available():
        return
    chroma = baseline.ChromaBaseline(embedder, state / "chroma")
    ingested = asyncio.run(chroma.ingest(documents))
    results.baseline_chunks = ingested.chunks
    results.baseline_chunks_per_s = ingested.chunks_per_s
    results.baseline_stage_seconds = {
        "split": round(ingested.split_seconds, 2),
        "embed": round(ingested.embed_seconds, 2),
        "store": round(ingested.store_seconds, 2),
    }


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
    metrics_port = free_port()
    worker = start_worker(settings, urls, metrics_port)
    sampler = RssSampler(worker.pid, interval=0.05)
    sampler.start()
    container = Container(settings, urls)
    try:
        await wait_for_worker(metrics_port, worker)
        principal = await admin(container)

        started = time.perf_counter()
        ids = await upload_all(container, principal, documents)
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
        stop(worker)
        await container.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    args = parser.parse_args()
    results = Results(size=args.size)
    scratch = tempfile.TemporaryDirectory(prefix="foundry-bench-")
    with scratch as state, backends(Path(state), bench_settings(Path(state))) as (settings, urls):
        documents = corpus(SIZES[args.size][0])
        results.corpus_documents = len(documents)
        embedder = build_local_embedder(settings)
        embedder.warm_up()
        rate, chunks, tokens = embedder_alone(documents, settings, embedder)
        results.embedder_chunks_per_s = rate
        results.corpus_chunks, results.corpus_tokens = chunks, tokens
        langchain_chroma(documents, embedder, Path(state), results)
        del embedder  # the worker loads its own model
        asyncio.run(pipeline(settings, urls, results, args.size))
    if results.baseline_chunks_per_s:
        results.pipeline_over_baseline = (
            results.pipeline_chunks_per_s / results.baseline_chunks_per_s
        )
    print_results(results)


def print_results(results: Results) -> None:
    rows: list[tuple[str, object]] = [
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
    ]
    if results.baseline_chunks:
        rows += [
            (
                "baseline LangChain+Chroma: chunks, chunks/s",
                f"{results.baseline_chunks}, {results.baseline_chunks_per_s:.1f}",
            ),
            (
                "baseline seconds per stage",
                ", ".join(f"{k} {v}" for k, v in results.baseline_stage_seconds.items()),
            ),
            (
                "pipeline / baseline chunks/s (target >= 1.5)",
                f"{results.pipeline_over_baseline:.2f}",
            ),
        ]
    else:
        rows.append(("baseline LangChain+Chroma", "not run: `make bench-install` for it"))
    rows += [
        (
            "small PDF upload->READY, s (target <= 3)",
            ", ".join(map(str, results.small_pdf_ready_seconds)),
        ),
        (f"{results.big_pdf_pages}-page PDF upload->READY, s", results.big_pdf_ready_seconds),
        ("worker peak RSS, MB (target < 1536)", results.worker_peak_rss_mb),
    ]
    payload = {
        **results.__dict__,
        "small_pdf_ready_median": statistics.median(results.small_pdf_ready_seconds or [0]),
    }
    report(rows, payload)


if __name__ == "__main__":
    main()
