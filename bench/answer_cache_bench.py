"""The answer cache's semantic lookup: what one lookup costs as the cache fills.

Every answer that misses the exact lookup asks the semantic one for the closest
earlier question of its organisation. An organisation holds up to
``FOUNDRY_ANSWER_CACHE_MAX_ENTRIES`` (256) questions. For each cache size, this
script stores that many answers with random 384-dimension question vectors through
one ``RedisAnswerCache`` (one API process), then times ``similar`` through a second
one (another process, which keeps its own copy of the vectors and reads only what was
added since its last lookup), once after each new answer stored by the first and then
repeatedly. For comparison it times what reading every vector at each lookup costs
(the list read whole, decoded, stacked and multiplied): what the lookup did before it
kept copies.

    .venv/bin/python bench/answer_cache_bench.py              # full (~30 seconds)
    .venv/bin/python bench/answer_cache_bench.py --size tiny  # smoke run

Prints a table and a JSON line. Needs Redis at FOUNDRY_BENCH_REDIS_URL (default the local
server); its keys are removed afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np
from common import REDIS_URL, report
from redis.asyncio import Redis

from domain.answers.cache import CachedAnswer
from infrastructure.cache.answer_cache import RedisAnswerCache
from infrastructure.cache.question_vectors import DIGEST_CHARS

DIMENSION = 384
CORPUS = "bench-corpus"


@dataclass(frozen=True)
class Size:
    entries: tuple[int, ...]
    lookups: int


SIZES = {"tiny": Size((0, 16), 50), "full": Size((0, 16, 64, 256), 2_000)}


def timed(lookups: int, lookup: Callable[[], Awaitable[object]]) -> Awaitable[dict[str, float]]:
    async def run() -> dict[str, float]:
        for _ in range(min(lookups // 10, 50)):
            await lookup()
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(lookups):
            await lookup()
        return {
            "cpu_us": round((time.process_time() - cpu) / lookups * 1e6, 1),
            "wall_us": round((time.perf_counter() - wall) / lookups * 1e6, 1),
        }

    return run()


async def read_everything(redis: Redis, key: str, query: np.ndarray) -> float | None:
    """The lookup without a copy: every entry read, decoded and compared."""
    entries = [entry for entry in await redis.lrange(key, 1, -1) if isinstance(entry, bytes)]
    if not entries:
        return None
    rows = np.stack([np.frombuffer(entry[DIGEST_CHARS:], dtype=np.float32) for entry in entries])
    return float(np.max(rows @ query))


async def measure(redis: Redis, entries: int, lookups: int) -> dict[str, object]:
    prefix = f"bench-answer-cache-{uuid.uuid4().hex[:8]}:"
    writer, reader = (
        RedisAnswerCache(
            redis,
            prefix,
            ttl_seconds=600,
            min_similarity=0.95,
            max_entries=10_000,
            copy_bytes=64 * 2**20,
        )
        for _ in range(2)
    )
    organization = uuid.uuid4()
    rng = np.random.default_rng(entries)
    query = rng.standard_normal(DIMENSION).astype(np.float32)
    unit = query / np.linalg.norm(query)
    # Growing: each lookup follows one more answer stored by the other process.
    growing_cpu = 0.0
    for index in range(entries):
        vector = rng.standard_normal(DIMENSION).astype(np.float32)
        answer = CachedAnswer(f"question {index}", f"answer {index}", (), "extractive")
        await writer.store(organization, CORPUS, vector.tolist(), answer)
        started = time.process_time()
        await reader.similar(organization, CORPUS, query.tolist())
        growing_cpu += time.process_time() - started
    key = f"{reader._base(organization, CORPUS)}:questions:{DIMENSION}"
    try:
        copied = await timed(lookups, lambda: reader.similar(organization, CORPUS, query.tolist()))
        whole = await timed(lookups, lambda: read_everything(redis, key, unit))
    finally:
        keys = [k async for k in redis.scan_iter(match=f"{prefix}*")]
        if keys:
            await redis.delete(*keys)
    return {
        "entries": entries,
        "with_copy": copied,
        "reading_every_vector": whole,
        "growing_cpu_us": round(growing_cpu / entries * 1e6, 1) if entries else None,
        "copy_bytes": reader._questions.held_bytes,
    }


async def run(size: Size) -> list[dict[str, object]]:
    redis = Redis.from_url(REDIS_URL)
    try:
        return [await measure(redis, entries, size.lookups) for entries in size.entries]
    finally:
        await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    size_name = parser.parse_args().size
    load_average = round(os.getloadavg()[0], 2)
    figures = asyncio.run(run(SIZES[size_name]))
    rows: list[tuple[str, object]] = [
        ("cores (load average at start)", f"{os.cpu_count()} ({load_average})"),
    ]
    for row in figures:
        copied, whole = row["with_copy"], row["reading_every_vector"]
        assert isinstance(copied, dict)
        assert isinstance(whole, dict)
        rows.append(
            (
                f"{row['entries']} questions: CPU / wall per lookup, µs",
                f"{copied['cpu_us']} / {copied['wall_us']} with a copy "
                f"(reading every vector: {whole['cpu_us']} / {whole['wall_us']})",
            )
        )
    payload = {
        "cores": os.cpu_count(),
        "load_average_at_start": load_average,
        "size": size_name,
        "lookups": SIZES[size_name].lookups,
        "figures": figures,
    }
    report(rows, payload)


if __name__ == "__main__":
    main()
