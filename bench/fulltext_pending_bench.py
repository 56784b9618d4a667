"""Full-text search while new chunks are being stored: the GIN index's pending list.

A GIN index with PostgreSQL's default ``fastupdate = on`` keeps new entries in a pending
list until the next VACUUM (or until the list passes ``gin_pending_list_limit``), and
every search reads the whole list. Migration 0009 turns that off for the chunks'
full-text index. This script shows what that changes, with query_bench's corpus and
questions:

1. one organisation's chunks are loaded through the pipeline's store code (query_bench's
   loader: real vectors for the distinct chunks, noisy copies for the rest), then
   VACUUM ANALYZE;
2. with the index as the migrations leave it (``fastupdate = off``), a second
   organisation stores chunks in steps, as ingestion does between two vacuums, with no
   VACUUM; after each step the full-text statement that search sends in the first
   organisation (``SqlChunkSearch.matching``, in a read-only tenant transaction) is
   timed over the same questions. The pending list is the index's, shared by every
   organisation, and the searched organisation's matches stay the same throughout;
3. VACUUM, and step 2 again with ``fastupdate = on`` (PostgreSQL's default, set by this
   script, then set back).

    .venv/bin/python bench/fulltext_pending_bench.py              # full (~5 minutes)
    .venv/bin/python bench/fulltext_pending_bench.py --size tiny  # smoke run

Prints a table and a JSON line. Needs Redis at FOUNDRY_BENCH_REDIS_URL (default the local
server) and starts its own embedded PostgreSQL in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import query_bench
from common import admin, backends, bench_settings, log, report
from sqlalchemy import text

from domain.entities import Principal
from domain.retrieval.fulltext import all_words
from infrastructure.container import BackendUrls, Container
from infrastructure.embeddings.factory import build_local_embedder
from infrastructure.embeddings.local import LocalEmbedder
from infrastructure.settings import Settings


@dataclass(frozen=True)
class Size:
    topics: int
    chunks: int  # loaded, then VACUUM ANALYZE
    step: int  # chunks stored between two measurements
    steps: int
    questions: int


SIZES = {"tiny": Size(5, 2_000, 200, 3, 60), "full": Size(79, 100_000, 1_000, 10, 300)}
MODES = ("off", "on")  # fastupdate: as migrated, then PostgreSQL's default
FIRST_ADDED_COPY = 10_000  # each series and step stores copies of its own (distinct hashes)


@dataclass
class Series:
    """One fastupdate setting: the statement's time after each step, and the stores'."""

    added: list[int] = field(default_factory=list)
    statement_mean_ms: list[float] = field(default_factory=list)
    statement_p95_ms: list[float] = field(default_factory=list)
    store_ms_per_chunk: float = 0.0


Question = tuple[str, list[float]]  # websearch words and the question's vector


async def statement_ms(
    container: Container, principal: Principal, questions: list[Question]
) -> tuple[float, float]:
    """Mean and p95 of the full-text statement over ``questions``, one tenant transaction."""
    candidates = container.settings.search_candidates
    timings: list[float] = []
    async with container.uow_factory.reader(principal) as reader:
        for words, vector in questions:
            started = time.perf_counter()
            await reader.search.matching(words, vector, candidates, None)
            timings.append(time.perf_counter() - started)
    milliseconds = np.asarray(timings) * 1000
    return round(float(milliseconds.mean()), 3), round(float(np.percentile(milliseconds, 95)), 3)


async def autocommit(container: Container, statement: str) -> None:
    async with container.engine.connect() as conn:
        connection = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await connection.execute(text(statement))


async def series(
    container: Container,
    searched: Principal,
    storing_tenant: query_bench.Tenant,
    corpus: list[query_bench.Topic],
    *,
    questions: list[Question],
    size: Size,
    first_copy: int,
) -> Series:
    """``storing_tenant`` stores ``size.steps`` steps of chunks without VACUUM; the
    statement is timed in ``searched`` before the first step and after each; then VACUUM."""
    result = Series()
    mean, p95 = await statement_ms(container, searched, questions)
    result.added.append(0)
    result.statement_mean_ms.append(mean)
    result.statement_p95_ms.append(p95)
    storing = 0.0
    added = 0
    for step in range(size.steps):
        started = time.perf_counter()
        _, chunks = await query_bench.load_copies(
            container, storing_tenant, corpus, size.step, first_copy + 100 * step
        )
        storing += time.perf_counter() - started
        added += chunks
        mean, p95 = await statement_ms(container, searched, questions)
        result.added.append(added)
        result.statement_mean_ms.append(mean)
        result.statement_p95_ms.append(p95)
        log(f"  {added:,} chunks added: {mean} ms mean, {p95} ms p95")
    result.store_ms_per_chunk = round(1000 * storing / max(added, 1), 3)
    await query_bench.vacuum_analyze(container)  # the next series starts with no pending list
    return result


async def run(
    settings: Settings,
    urls: BackendUrls,
    corpus: list[query_bench.Topic],
    embedder: LocalEmbedder,
    size: Size,
) -> dict[str, object]:
    container = Container(settings, urls)
    try:
        principal = await admin(container)
        tenant = query_bench.Tenant(principal.user_id, principal.organization_id, "")
        storing = await admin(container)
        storing_tenant = query_bench.Tenant(storing.user_id, storing.organization_id, "")
        log(f"Loading {size.chunks:,} chunks")
        started = time.perf_counter()
        documents, chunks = await query_bench.load_copies(container, tenant, corpus, size.chunks, 0)
        await query_bench.vacuum_analyze(container)
        load_seconds = round(time.perf_counter() - started, 1)
        texts = [
            question
            for question in list(query_bench.questions())[: size.questions]
            if all_words(question)
        ]
        vectors = await embedder.embed_queries(texts)
        questions = [(all_words(t), v) for t, v in zip(texts, vectors, strict=True)]
        found: dict[str, Series] = {}
        for number, mode in enumerate(MODES):
            log(f"fastupdate = {mode}")
            await autocommit(container, f"ALTER INDEX ix_chunks_tsv SET (fastupdate = {mode})")
            first_copy = FIRST_ADDED_COPY + 10_000 * number
            found[mode] = await series(
                container,
                principal,
                storing_tenant,
                corpus,
                questions=questions,
                size=size,
                first_copy=first_copy,
            )
        await autocommit(container, "ALTER INDEX ix_chunks_tsv SET (fastupdate = off)")
    finally:
        await container.aclose()
    return {
        "documents": documents,
        "chunks": chunks,
        "load_seconds": load_seconds,
        "questions": len(questions),
        "fastupdate": {mode: found[mode].__dict__ for mode in MODES},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    size_name = parser.parse_args().size
    size = SIZES[size_name]
    load_average = round(os.getloadavg()[0], 2)
    with tempfile.TemporaryDirectory(prefix="foundry-pending-bench-") as scratch:
        state = Path(scratch)
        settings = bench_settings(state)
        embedder = build_local_embedder(settings)
        log(f"Embedding the {size.topics} longest pydoc topics (distinct chunks)")
        corpus = query_bench.embed_corpus(size.topics, embedder, settings)
        with backends(state, settings) as (settings, urls):
            figures = asyncio.run(run(settings, urls, corpus, embedder, size))
    by_mode = figures["fastupdate"]
    assert isinstance(by_mode, dict)
    rows: list[tuple[str, object]] = [
        ("cores (load average at start)", f"{os.cpu_count()} ({load_average})"),
        (
            "chunks / documents searched (VACUUM after loading)",
            f"{figures['chunks']:,} / {figures['documents']:,}",
        ),
        ("questions timed per step", figures["questions"]),
    ]
    for mode in MODES:
        each = by_mode[mode]
        rows += [
            (f"fastupdate={mode}: chunks stored by another organisation", each["added"]),
            (f"fastupdate={mode}: full-text statement mean, ms", each["statement_mean_ms"]),
            (f"fastupdate={mode}: full-text statement p95, ms", each["statement_p95_ms"]),
            (f"fastupdate={mode}: storing, ms per chunk", each["store_ms_per_chunk"]),
        ]
    report(rows, {"cores": os.cpu_count() or 1, "size": size_name, **figures})


if __name__ == "__main__":
    main()
