"""Query benchmark: hybrid search, streamed answers and `ask` through the real API (a
`foundry serve` process) over 100,000 stored chunks.

Corpus: the Python language reference that ships inside every CPython
(`pydoc_data.topics`), parsed and chunked exactly as the worker does (same parser,
chunker and tokenizer), then repeated across many documents until the organisation
holds N chunks; ten small organisations share another 10 %, so the tenant filter has
rows to reject and the planner sees many organisations of different sizes (one of them
is searched too: the small-organisation figures). Embedding 100,000 chunks with the
CPU model would take over an hour, so only the distinct chunks (~800) are embedded for
real; every further copy gets the real vector plus gaussian noise (sigma 0.02 per
dimension, renormalised, ~0.93 cosine to the original), so the HNSW graph holds
distinct neighbours rather than exact duplicates. Rows go in through the store code
the pipeline uses (`uow.documents.add/claim/mark_ready`, `uow.chunks.replace`), then
VACUUM ANALYZE.

Every measured request asks a question the server has not seen before (the query
embedder caches 2,048 questions); one extra run at concurrency 8 repeats 16 questions
to show the cached case.

    .venv/bin/python bench/query_bench.py              # full run (5-16 minutes on 2 cores)
    .venv/bin/python bench/query_bench.py --size tiny  # smoke run (~1 minute)

Prints EXPLAIN ANALYZE of the two search queries, a table and a JSON line. Needs Redis at
FOUNDRY_BENCH_REDIS_URL (default the local server) and starts its own embedded PostgreSQL
in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from pydoc_data.topics import topics
from typing import Any, TypeVar

import httpx
import numpy as np
import psutil
from common import REDIS_URL, RssSampler, bench_settings, log
from lean_http import LeanHttpClient, LeanResponse
from numpy.typing import NDArray
from pydantic import SecretStr
from sqlalchemy import text
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from domain.entities import ChunkDraft, Document, DocumentStatus, Principal, Role
from domain.ingestion.chunking import ChunkingOptions, chunk_document
from domain.ingestion.filetypes import FileKind
from domain.retrieval.fulltext import all_words
from infrastructure.container import BackendUrls, Container
from infrastructure.database.driver import driver_connection
from infrastructure.database.migrate import upgrade_to_head
from infrastructure.database.repositories.chunk_search import matching_query, nearest_query
from infrastructure.database.uow import SqlUnitOfWork
from infrastructure.embedded import EmbeddedPostgres
from infrastructure.embeddings.factory import build_local_embedder
from infrastructure.embeddings.local import LocalEmbedder
from infrastructure.parsing.limits import ParseLimits
from infrastructure.parsing.parser import FileParser
from infrastructure.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")
Vectors = NDArray[np.float32]


@dataclass(frozen=True)
class Size:
    topics: int  # distinct documents (longest pydoc topics first)
    chunks: int  # chunks in the measured organisation
    searches: int  # measured searches per concurrency level
    warm_up: int
    answers: int  # measured answers per concurrency level
    asks: int


SIZES = {"tiny": Size(5, 2_000, 60, 10, 10, 5), "full": Size(79, 100_000, 400, 30, 100, 30)}
SEARCH_CONCURRENCY = (1, 8, 32)
ANSWER_CONCURRENCY = (1, 8)
DISTRACTOR_SHARE = 0.1
SMALL_ORGANIZATIONS = 10  # sharing the distractor chunks
SMALL_CONCURRENCY = (1, 8)  # searches in one small organisation
NOISE_SIGMA = 0.02
DOCUMENTS_PER_TRANSACTION = 20
LOADERS = 2
REPEATED_QUESTIONS = 16
STAGES = ("embed", "vector", "fulltext", "fusion", "total")
JWT_SECRET = "bench-query-" + "Zq8w3Xk5Lm2Np7Rt" * 3
PASSWORD = "bench password 123"  # noqa: S105

SIGN_UP = """mutation($input: SignUpInput!) {
  signUp(input: $input) { accessToken user { id } organization { id } } }"""
SEARCH = """query($q: String!) {
  search(query: $q, limit: 8) { chunkId score similarity page text document { id filename } } }"""
CREATE_CHAT = "mutation { createChat { id } }"
ASK = """mutation($c: ID!, $q: String!) {
  ask(chatId: $c, question: $q) { id content sources { index document { id filename } } } }"""
# AnswerDone.message is a Message and AnswerError.message a String: one must be aliased.
ANSWER = """subscription($c: ID!, $q: String!) {
  answer(chatId: $c, question: $q) {
    __typename
    ... on AnswerSources { sources { index snippet score document { id filename } } }
    ... on AnswerToken { text }
    ... on AnswerDone { message { id content } }
    ... on AnswerError { code errorMessage: message }
  } }"""

SUBJECTS = (
    "the with statement", "context managers", "the assert statement", "assignment statements",
    "augmented assignment", "async functions", "the await expression", "identifiers",
    "string literals", "attribute access", "__getattr__", "binary arithmetic operators",
    "bitwise operators", "code objects", "the Ellipsis object", "None", "type objects",
    "boolean operations", "the break statement", "callable types", "function calls",
    "class definitions", "comparisons", "compound statements", "the continue statement",
    "numeric conversions", "__init__ and __new__", "the pdb debugger", "the del statement",
    "dictionaries", "exec and eval", "the else clause on loops", "exceptions",
    "the execution model", "expression lists", "floating point literals", "the for loop",
    "f-strings", "format specifications", "function definitions", "the global statement",
    "reserved identifiers", "the if statement", "imaginary numbers", "the import statement",
    "membership tests with in", "integer literals", "lambda expressions", "list displays",
    "name binding", "the nonlocal statement", "numeric types", "object identity",
    "operator precedence", "the pass statement", "the power operator", "the raise statement",
    "the return statement", "sequence types", "shift operators", "slicing",
    "special attributes", "special method names", "string methods", "str.split",
    "truth value testing", "the try statement", "built-in types", "bound methods", "modules",
    "tuples", "mutable sequence operations", "unary operators", "the while loop",
    "generators and yield", "set comprehensions", "decorators", "descriptors", "metaclasses",
    "keyword arguments", "default parameter values", "iterators", "hashing", "__slots__",
    "operator overloading", "integer division", "printf-style string formatting",
    "the finally clause", "exception chaining", "coroutines",
)  # fmt: skip
TEMPLATES = (
    "How does {} work in Python?", "What is {}?", "Can you explain {} with an example?",
    "When should I use {}?", "What are common mistakes with {}?",
    "What does the language reference say about {}?", "How is {} evaluated?",
    "What are the rules for {}?", "Is there anything special about {} in Python 3?",
    "What errors can {} raise?", "How do I use {} correctly?", "What is the syntax of {}?",
    "Give me a short summary of {}.", "How does {} differ from similar constructs?",
    "Why does Python have {}?", "What happens at run time with {}?",
    "How does {} interact with exceptions?", "Explain {} to a beginner.",
    "What are the edge cases of {}?", "How does {} behave with None?",
    "What limitations does {} have?", "How does {} relate to scopes and namespaces?",
    "What is a typical use of {}?", "How can I debug problems with {}?",
)  # fmt: skip


def questions() -> Iterator[str]:
    """Distinct natural-language questions (2,000+), in a fixed shuffled order."""
    pool = [template.format(subject) for subject in SUBJECTS for template in TEMPLATES]
    random.Random(7).shuffle(pool)  # noqa: S311 (a fixed order, not a secret)
    return iter(pool)


# ---------------------------------------------------------------- corpus and loading


@dataclass
class Topic:
    name: str
    body: str
    drafts: list[ChunkDraft]
    vectors: Vectors  # one unit row per draft


def embed_corpus(count: int, embedder: LocalEmbedder, settings: Settings) -> list[Topic]:
    """The longest ``count`` topics, parsed and chunked as the worker does, embedded for real."""
    parser = FileParser(ParseLimits())
    options = ChunkingOptions(settings.chunk_size_tokens, settings.chunk_overlap_tokens)
    names = sorted(topics, key=lambda name: -len(topics[name]))[:count]
    corpus: list[Topic] = []
    with tempfile.TemporaryDirectory() as scratch:
        for name in names:
            path = Path(scratch) / f"{name}.txt"
            path.write_text(topics[name], encoding="utf-8")
            drafts = chunk_document(parser.parse(path, FileKind.TEXT), embedder.tokenizer, options)
            corpus.append(Topic(name, topics[name], drafts, np.zeros((0, 0), np.float32)))
    texts = [draft.text for topic in corpus for draft in topic.drafts]
    vectors = np.asarray(asyncio.run(embedder.embed_documents(texts)), dtype=np.float32)
    offset = 0
    for topic in corpus:
        topic.vectors = vectors[offset : offset + len(topic.drafts)]
        offset += len(topic.drafts)
    return corpus


@dataclass(frozen=True)
class Tenant:
    user_id: uuid.UUID
    organization_id: uuid.UUID
    access_token: str

    @property
    def principal(self) -> Principal:
        return Principal(self.user_id, self.organization_id, Role.ADMIN, uuid.uuid4())


def copy_vectors(topic: Topic, copy: int, rng: np.random.Generator) -> list[list[float]]:
    if copy == 0:
        return topic.vectors.tolist()  # type: ignore[no-any-return]
    noisy = topic.vectors + rng.normal(0, NOISE_SIGMA, topic.vectors.shape).astype(np.float32)
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    return noisy.tolist()  # type: ignore[no-any-return]


async def store_documents(
    container: Container,
    tenant: Tenant,
    batch: Sequence[tuple[Topic, int]],
    rng: np.random.Generator,
) -> None:
    """One transaction: each copy added, claimed, given its chunks and marked READY."""
    now = container.clock.now()
    async with container.uow_factory.organization(tenant.organization_id) as uow:
        for topic, copy in batch:
            document_id = uuid.uuid4()
            # Two topics ("if", "else") share their text: the name keeps the hashes apart.
            body = f"{topic.name}\n{copy}\n{topic.body}".encode()
            await uow.documents.add(
                Document(
                    id=document_id,
                    organization_id=tenant.organization_id,
                    uploaded_by=tenant.user_id,
                    filename=f"{topic.name}-{copy:04d}.txt",
                    mime_type=FileKind.TEXT.mime_type,
                    size_bytes=len(body),
                    sha256=hashlib.sha256(body).hexdigest(),
                    storage_key=f"{tenant.organization_id}/{document_id}",
                    status=DocumentStatus.PENDING,
                    error_code=None,
                    page_count=None,
                    chunk_count=0,
                    attempts=0,
                    created_at=now,
                    updated_at=now,
                    processed_at=None,
                )
            )
            claimed = await uow.documents.claim(document_id, now)
            assert claimed is not None
            await uow.chunks.replace(claimed, topic.drafts, copy_vectors(topic, copy, rng))
            await uow.documents.mark_ready(document_id, len(topic.drafts), None, now)
        await uow.commit()


async def load_copies(
    container: Container, tenant: Tenant, corpus: list[Topic], target: int, first_copy: int
) -> tuple[int, int]:
    """Whole copies of the corpus's documents until ``target`` chunks; (documents, chunks)."""
    plan: list[tuple[Topic, int]] = []
    total = 0
    for copy in itertools.count(first_copy):
        for topic in corpus:
            if total >= target:
                break
            plan.append((topic, copy))
            total += len(topic.drafts)
        if total >= target:
            break
    batches = iter(
        [
            plan[offset : offset + DOCUMENTS_PER_TRANSACTION]
            for offset in range(0, len(plan), DOCUMENTS_PER_TRANSACTION)
        ]
    )
    rng = np.random.default_rng(first_copy)
    stored = 0

    async def loader() -> None:
        nonlocal stored
        for batch in batches:
            await store_documents(container, tenant, batch, rng)
            before, stored = stored, stored + sum(len(topic.drafts) for topic, _ in batch)
            if before * 10 // target != stored * 10 // target:
                log(f"  {stored:,} / {total:,} chunks stored")

    async with asyncio.TaskGroup() as group:  # a failure cancels the other loader
        for _ in range(LOADERS):
            group.create_task(loader())
    return len(plan), total


async def vacuum_analyze(container: Container) -> None:
    """What autovacuum does soon after a bulk insert (statistics, GIN pending list)."""
    async with container.engine.connect() as conn:
        autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await autocommit.execute(text("VACUUM (ANALYZE) documents, chunks"))


async def shared_buffers(container: Container) -> str:
    """The server's shared_buffers (the embedded server's comes from our settings)."""
    async with container.engine.connect() as conn:
        return str(await conn.scalar(text("SHOW shared_buffers")))


async def explain_search(
    container: Container, tenant: Tenant, embedding: list[float], question: str
) -> tuple[str, str]:
    """EXPLAIN (ANALYZE, BUFFERS) of the exact SQL both search paths send, replayed as the
    app role in a tenant transaction (which sets up the HNSW scans too)."""
    settings = container.settings
    candidates, ranked = settings.search_candidates, settings.search_fulltext_max_ranked
    queries = (
        nearest_query(tenant.principal.organization_id, embedding, candidates, None),
        matching_query(all_words(question), embedding, candidates, None, ranked),
    )
    plans: list[str] = []
    async with container.uow_factory.tenant(tenant.principal) as uow:
        assert isinstance(uow, SqlUnitOfWork)
        driver = await driver_connection(uow.session)
        for statement, arguments in queries:
            explain = "EXPLAIN (ANALYZE, BUFFERS) " + statement
            await driver.fetch(explain, *arguments)  # warm the cache first
            rows = await driver.fetch(explain, *arguments)
            plans.append("\n".join(str(row[0]) for row in rows))
    return plans[0], plans[1]


def short_plan(plan: str) -> str:
    """The plan with the 384-number query vector elided."""
    return re.sub(r"'[\[{][-0-9.e,]{200,}[\]}]'", "'[...]'", plan)


def execution_ms(plan: str) -> float:
    line = next(line for line in plan.splitlines() if line.startswith("Execution Time"))
    return float(line.split(":")[1].split()[0])


# ---------------------------------------------------------------- the API process


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_api(state: Path, urls: BackendUrls, port: int, prefix: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOUNDRY_")}
    env.update(
        {
            "FOUNDRY_ENVIRONMENT": "development",
            "FOUNDRY_DATABASE_URL": urls.database_url,
            "FOUNDRY_REDIS_URL": urls.redis_url,
            "FOUNDRY_REDIS_KEY_PREFIX": prefix,
            "FOUNDRY_JWT_SECRET": JWT_SECRET,
            "FOUNDRY_STATE_DIR": str(state),
            # The full run outlasts the default 15-minute access token.
            "FOUNDRY_ACCESS_TOKEN_TTL_SECONDS": "14400",
            # One bench user sends thousands of questions: budgets it cannot spend, so
            # each search and answer still pays its rate-limit check, as in production.
            "FOUNDRY_RATE_LIMITS": json.dumps(
                {"ask_user": "1000000/60", "search_user": "1000000/60", "chats_user": "1000000/60"}
            ),
        }
    )
    log_file = (state / "api.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "infrastructure.cli", "serve", "--port", str(port)],
        env=env,
        stdout=log_file,
        stderr=log_file,
        cwd=ROOT,
    )


async def wait_ready(http: httpx.AsyncClient, api: subprocess.Popen[bytes]) -> None:
    for _ in range(600):
        if api.poll() is not None:
            raise RuntimeError("the API exited; see api.log in the state directory")
        try:
            if (await http.get("/readyz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError("the API did not become ready")


async def graphql(
    http: httpx.AsyncClient | LeanHttpClient,
    query: str,
    variables: dict[str, Any],
    token: str | None = None,
) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    payload = {"query": query, "variables": variables}
    if isinstance(http, LeanHttpClient):
        response: httpx.Response | LeanResponse = await http.post_json("/graphql", payload, headers)
    else:
        response = await http.post("/graphql", json=payload, headers=headers)
    body = response.json()
    if response.status_code != 200 or body.get("errors"):
        raise RuntimeError(f"GraphQL failed ({response.status_code}): {body}")
    data: dict[str, Any] = body["data"]
    return data


async def sign_up(http: httpx.AsyncClient, name: str) -> Tenant:
    email = f"{name}-{uuid.uuid4().hex[:8]}@example.com"
    data = await graphql(http, SIGN_UP, {"input": {"email": email, "password": PASSWORD}})
    payload = data["signUp"]
    return Tenant(
        uuid.UUID(payload["user"]["id"]),
        uuid.UUID(payload["organization"]["id"]),
        payload["accessToken"],
    )


class AnswerSocket:
    """One graphql-transport-ws connection, used for one answer after another."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.ids = itertools.count(1)

    @classmethod
    async def open(cls, url: str, token: str) -> AnswerSocket:
        ws = await connect(url, subprotocols=[Subprotocol("graphql-transport-ws")])
        init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
        await ws.send(json.dumps(init))
        reply = json.loads(await ws.recv())
        if reply["type"] != "connection_ack":
            raise RuntimeError(f"connection refused: {reply}")
        return cls(ws)

    async def answer(self, chat_id: str, question: str) -> tuple[float, float]:
        """Seconds from subscribing to the first AnswerToken and to AnswerDone."""
        operation = str(next(self.ids))
        subscribe = {"query": ANSWER, "variables": {"c": chat_id, "q": question}}
        started = time.perf_counter()
        await self.ws.send(json.dumps({"id": operation, "type": "subscribe", "payload": subscribe}))
        first: float | None = None
        done: float | None = None
        while True:
            message = json.loads(await self.ws.recv())
            if message["type"] == "ping":
                await self.ws.send(json.dumps({"type": "pong"}))
                continue
            if message.get("id") != operation:
                continue
            if message["type"] == "complete":
                break
            if message["type"] != "next" or message["payload"].get("errors"):
                raise RuntimeError(f"answer failed: {message}")
            kind = message["payload"]["data"]["answer"]["__typename"]
            if kind == "AnswerToken" and first is None:
                first = time.perf_counter() - started
            elif kind == "AnswerDone":
                done = time.perf_counter() - started
            elif kind == "AnswerError":
                raise RuntimeError(f"answer failed: {message}")
        if first is None or done is None:
            raise RuntimeError("the answer ended without a token or AnswerDone")
        return first, done


# ---------------------------------------------------------------- measuring


@dataclass
class Cpu:
    """CPU seconds used so far by the API process, PostgreSQL, this process and the machine."""

    api: float
    postgres: float
    client: float
    machine: float


def cpu_now(api_pid: int, postmaster_pid: int) -> Cpu:
    def used(process: psutil.Process, children: bool) -> float:
        times = process.cpu_times()
        total = float(times.user + times.system)
        if children:  # backends that exited are accounted to the postmaster
            total += float(times.children_user + times.children_system)
        return total

    postmaster = psutil.Process(postmaster_pid)
    postgres = used(postmaster, True)
    for child in postmaster.children(recursive=True):
        try:
            postgres += used(child, False)
        except psutil.Error:
            continue
    machine = psutil.cpu_times()
    busy = float(sum(machine)) - float(machine.idle) - float(getattr(machine, "iowait", 0.0))
    return Cpu(used(psutil.Process(api_pid), False), postgres, time.process_time(), busy)


Schedule = dict[int, tuple[float, float]]


def schedule_now(pid: int) -> Schedule:
    """Seconds each thread of ``pid`` has run and waited for a core, by thread id
    (``/proc/<pid>/task/<tid>/schedstat``; empty where the kernel does not keep it)."""
    found: Schedule = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            running, waiting, _ = (task / "schedstat").read_text().split()
        except (OSError, ValueError):
            continue
        found[int(task.name)] = (int(running) / 1e9, int(waiting) / 1e9)
    return found


def thread_shares(pid: int, before: Schedule, after: Schedule, elapsed: float) -> dict[str, Any]:
    """The share of the wall clock the API's event loop (its main thread) and its other
    threads (the embedding) spent running and waiting for a core."""
    shares: dict[str, Any] = {}
    for name, tids in (
        ("event_loop", [pid]),
        ("other_threads", [tid for tid in after if tid != pid]),
    ):
        running = sum(after[t][0] - before.get(t, (0.0, 0.0))[0] for t in tids if t in after)
        waiting = sum(after[t][1] - before.get(t, (0.0, 0.0))[1] for t in tids if t in after)
        shares[name] = {
            "running": round(running / elapsed, 3),
            "waiting_for_a_core": round(waiting / elapsed, 3),
        }
    return shares


def other(cpu: Cpu) -> float:
    return cpu.machine - cpu.api - cpu.postgres - cpu.client


def histograms(metrics: str, name: str) -> dict[str, tuple[float, float]]:
    """label value -> (sum, count) of one single-label Prometheus histogram."""
    found: dict[str, list[float]] = {}
    for line in metrics.splitlines():
        for index, suffix in enumerate(("_sum{", "_count{")):
            if line.startswith(name + suffix):
                label = line.split('="', 1)[1].split('"', 1)[0]
                found.setdefault(label, [0.0, 0.0])[index] = float(line.rsplit(" ", 1)[1])
    return {label: (value[0], value[1]) for label, value in found.items()}


@dataclass
class Probe:
    """Everything a phase is compared against: CPU, server histograms, wall clock."""

    http: httpx.AsyncClient
    api_pid: int
    postmaster_pid: int

    async def snapshot(self) -> tuple[Cpu, str, float]:
        metrics = (await self.http.get("/metrics")).text
        return cpu_now(self.api_pid, self.postmaster_pid), metrics, time.perf_counter()


def percentiles(seconds: Sequence[float]) -> dict[str, float]:
    if not seconds:
        return {"p50_ms": 0.0, "p95_ms": 0.0, "p99_ms": 0.0}
    p50, p95, p99 = np.percentile(np.asarray(seconds) * 1000, [50, 95, 99])
    return {
        "p50_ms": round(float(p50), 1),
        "p95_ms": round(float(p95), 1),
        "p99_ms": round(float(p99), 1),
    }


async def closed_loop(
    workers: Sequence[Callable[[T], Awaitable[Any]]], jobs: Sequence[T]
) -> tuple[list[Any], int]:
    """Each worker sends its next job when its previous one returns; (results, errors)."""
    pending = iter(jobs)
    results: list[Any] = []
    errors = 0

    async def run(worker: Callable[[T], Awaitable[Any]]) -> None:
        nonlocal errors
        for job in pending:
            try:
                results.append(await worker(job))
            except Exception as exc:
                errors += 1
                if errors <= 3:
                    log(f"  request failed: {exc!r}"[:400])

    await asyncio.gather(*(run(worker) for worker in workers))
    return results, errors


def mean_ms(before: str, after: str, name: str) -> dict[str, float]:
    """Mean of one histogram per label value between two /metrics scrapes, in ms."""
    first, last = histograms(before, name), histograms(after, name)
    means = {}
    for label, (total, count) in last.items():
        earlier_total, earlier_count = first.get(label, (0.0, 0.0))
        if count > earlier_count:
            means[label] = round(1000 * (total - earlier_total) / (count - earlier_count), 2)
    return means


async def measured(
    probe: Probe,
    workers: Sequence[Callable[[T], Awaitable[Any]]],
    jobs: Sequence[T],
) -> tuple[list[Any], dict[str, Any]]:
    """Run a closed loop; summarise throughput, CPU per request and server-side timings."""
    schedule0 = schedule_now(probe.api_pid)
    cpu0, metrics0, started = await probe.snapshot()
    results, errors = await closed_loop(workers, jobs)
    elapsed = time.perf_counter() - started
    cpu1, metrics1, _ = await probe.snapshot()
    schedule1 = schedule_now(probe.api_pid)
    stages = mean_ms(metrics0, metrics1, "foundry_retrieval_stage_seconds")
    done = max(len(results), 1)
    summary: dict[str, Any] = {
        "concurrency": len(workers),
        "requests": len(results),
        "errors": errors,
        "per_s": round(len(results) / elapsed, 1),
        "cpu_ms_per_request": {
            "api": round(1000 * (cpu1.api - cpu0.api) / done, 1),
            "postgres": round(1000 * (cpu1.postgres - cpu0.postgres) / done, 1),
            "client": round(1000 * (cpu1.client - cpu0.client) / done, 1),
        },
        # CPU that other processes (anything else running on the machine) took meanwhile.
        "other_processes_cpu_share": round(
            max(0.0, other(cpu1) - other(cpu0)) / (elapsed * (os.cpu_count() or 1)), 3
        ),
        "stage_mean_ms": {stage: stages.get(stage, 0.0) for stage in STAGES},
    }
    if schedule1:
        summary["api_threads"] = thread_shares(probe.api_pid, schedule0, schedule1, elapsed)
    first_token = mean_ms(metrics0, metrics1, "foundry_answer_first_token_seconds")
    if first_token:
        summary["server_first_token_mean_ms"] = first_token
    return results, summary


# ---------------------------------------------------------------- the run


@dataclass
class Results:
    cores: int = field(default_factory=lambda: os.cpu_count() or 1)
    size: str = ""
    load_average_at_start: float = 0.0
    topics: int = 0
    distinct_chunks: int = 0
    embed_distinct_seconds: float = 0.0
    documents: int = 0
    chunks: int = 0
    distractor_documents: int = 0  # in all the small organisations
    distractor_chunks: int = 0
    load_seconds: float = 0.0
    vacuum_analyze_seconds: float = 0.0
    shared_buffers: str = ""
    explain_vector_ms: list[float] = field(default_factory=list)
    explain_fulltext_ms: list[float] = field(default_factory=list)
    hnsw_index_used: bool = False
    search: dict[str, dict[str, Any]] = field(default_factory=dict)
    answer: dict[str, dict[str, Any]] = field(default_factory=dict)
    ask: dict[str, Any] = field(default_factory=dict)
    api_rss_mb: float = 0.0
    api_peak_rss_mb: float = 0.0


EXPLAINED = (
    "How does the with statement work?",
    "What is the syntax of lambda expressions?",
    "When should I use the nonlocal statement?",
)


async def prepare(
    container: Container, tenant: Tenant, small: list[Tenant], corpus: list[Topic], size: Size,
    *, embedder: LocalEmbedder, results: Results,
) -> None:  # fmt: skip
    """Load the chunks of all organisations, VACUUM ANALYZE, and EXPLAIN the search SQL."""
    log(
        f"Loading {size.chunks:,} chunks "
        f"(+{DISTRACTOR_SHARE:.0%} in {len(small)} small organisations)"
    )
    started = time.perf_counter()
    results.documents, results.chunks = await load_copies(container, tenant, corpus, size.chunks, 0)
    for number, organization in enumerate(small):
        target = int(size.chunks * DISTRACTOR_SHARE / len(small))
        documents, chunks = await load_copies(
            container, organization, corpus, target, 100_000 + 1_000 * number
        )
        results.distractor_documents += documents
        results.distractor_chunks += chunks
    results.load_seconds = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    await vacuum_analyze(container)
    results.vacuum_analyze_seconds = round(time.perf_counter() - started, 1)
    results.shared_buffers = await shared_buffers(container)
    log(f"Loaded in {results.load_seconds} s; VACUUM ANALYZE {results.vacuum_analyze_seconds} s")
    for question in EXPLAINED:
        embedding = await embedder.embed_query(question)
        vector_plan, fulltext_plan = await explain_search(container, tenant, embedding, question)
        results.explain_vector_ms.append(execution_ms(vector_plan))
        results.explain_fulltext_ms.append(execution_ms(fulltext_plan))
        if question == EXPLAINED[0]:
            results.hnsw_index_used = "ix_chunks_embedding_hnsw" in vector_plan
            print(f"-- vector search ({question!r}):\n{short_plan(vector_plan)}\n")
            print(f"-- full-text search:\n{short_plan(fulltext_plan)}\n", flush=True)


@dataclass
class Client:
    """The measuring side: one member of the loaded organisation, talking to the API."""

    http: httpx.AsyncClient
    port: int
    token: str
    probe: Probe
    fresh: Iterator[str] = field(default_factory=questions)  # never asked before
    # The measured requests: the load generator's own CPU comes out of the API's cores.
    lean: LeanHttpClient = field(init=False)

    def __post_init__(self) -> None:
        self.lean = LeanHttpClient("127.0.0.1", self.port)

    async def search(self, question: str) -> float:
        started = time.perf_counter()
        data = await graphql(self.lean, SEARCH, {"q": question}, self.token)
        if not data["search"]:
            raise RuntimeError(f"no hits for {question!r}")
        return time.perf_counter() - started

    async def ask(self, job: tuple[str, str]) -> float:
        started = time.perf_counter()
        await graphql(self.lean, ASK, {"c": job[0], "q": job[1]}, self.token)
        return time.perf_counter() - started

    async def chats(self, count: int) -> list[tuple[str, str]]:
        """``count`` new chats, each with the new question it will be asked."""
        created = []
        for _ in range(count):
            chat = await graphql(self.http, CREATE_CHAT, {}, self.token)
            created.append((str(chat["createChat"]["id"]), next(self.fresh)))
        return created

    async def warm_up(self, requests: int) -> None:
        """Wait until the API's model is loaded (the first search waits for it), then more."""
        for _ in range(120):
            try:
                await self.search(next(self.fresh))
                break
            except RuntimeError:
                await asyncio.sleep(1)
        await closed_loop([self.search] * 8, [next(self.fresh) for _ in range(requests)])

    async def searches(
        self, count: int, results: Results, concurrencies: Sequence[int], prefix: str = ""
    ) -> list[str]:
        """``count`` new questions at each concurrency; returns the questions asked."""
        seen: list[str] = []
        for concurrency in concurrencies:
            jobs = [next(self.fresh) for _ in range(count)]
            seen += jobs
            latencies, summary = await measured(self.probe, [self.search] * concurrency, jobs)
            key = f"{prefix}c{concurrency}"
            results.search[key] = {**summary, **percentiles(latencies)}
            log(f"search {key}: {results.search[key]}")
        return seen

    async def run(self, size: Size, results: Results) -> None:
        seen = await self.searches(size.searches, results, SEARCH_CONCURRENCY)
        # The query embedder's cache: the same few questions again and again.
        repeated = [seen[i % REPEATED_QUESTIONS] for i in range(size.searches)]
        latencies, summary = await measured(self.probe, [self.search] * 8, repeated)
        results.search["c8_repeated"] = {**summary, **percentiles(latencies)}
        log(f"search c=8, repeated questions: {results.search['c8_repeated']}")

        for concurrency in ANSWER_CONCURRENCY:
            url = f"ws://127.0.0.1:{self.port}/graphql"
            sockets = [await AnswerSocket.open(url, self.token) for _ in range(concurrency)]
            chats = await self.chats(size.answers)
            workers = [lambda job, s=s: s.answer(*job) for s in sockets]
            timings, summary = await measured(self.probe, workers, chats)
            for answer_socket in sockets:
                await answer_socket.ws.close()
            results.answer[f"c{concurrency}"] = {
                **summary,
                "first_token": percentiles([first for first, _ in timings]),
                "done": percentiles([done for _, done in timings]),
            }
            log(f"answer c={concurrency}: {results.answer[f'c{concurrency}']}")

        latencies, summary = await measured(self.probe, [self.ask], await self.chats(size.asks))
        results.ask = {**summary, **percentiles(latencies)}
        log(f"ask c=1: {results.ask}")


def postmaster_pid(state: Path) -> int:
    return int((state / "postgres" / "postmaster.pid").read_text().splitlines()[0])


async def bench(
    settings: Settings, urls: BackendUrls, corpus: list[Topic], size: Size, *,
    embedder: LocalEmbedder, results: Results,
) -> None:  # fmt: skip
    port = free_port()
    api = start_api(settings.state_dir, urls, port, settings.redis_key_prefix)
    sampler = RssSampler(api.pid)
    sampler.start()
    container = Container(settings, urls)
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120, limits=limits)
    clients: list[Client] = []
    try:
        await wait_ready(http, api)
        tenant = await sign_up(http, "bench")
        small = [await sign_up(http, f"small{n}") for n in range(SMALL_ORGANIZATIONS)]
        await prepare(container, tenant, small, corpus, size, embedder=embedder, results=results)
        probe = Probe(http, api.pid, postmaster_pid(settings.state_dir))
        client = Client(http, port, tenant.access_token, probe)
        clients.append(client)
        log("Waiting for the API's model, then warming up")
        await client.warm_up(size.warm_up)
        await client.run(size, results)
        # The same questions stream (never asked before), from a member of a small one.
        neighbour = Client(http, port, small[0].access_token, probe, fresh=client.fresh)
        clients.append(neighbour)
        # Half as many: the 2,160 distinct questions must last the whole run.
        await neighbour.searches(size.searches // 2, results, SMALL_CONCURRENCY, "small_")
        results.api_rss_mb = round(psutil.Process(api.pid).memory_info().rss / 2**20, 1)
        results.api_peak_rss_mb = round(sampler.peak / 2**20, 1)
    finally:
        sampler.running = False
        for each in clients:
            await each.lean.aclose()
        await http.aclose()
        await container.aclose()
        api.terminate()
        api.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    args = parser.parse_args()
    size = SIZES[args.size]
    results = Results(size=args.size, load_average_at_start=round(os.getloadavg()[0], 2))
    with tempfile.TemporaryDirectory(prefix="foundry-query-bench-") as scratch:
        state = Path(scratch)
        settings = bench_settings(state, JWT_SECRET)
        embedder = build_local_embedder(settings)
        log(f"Embedding the {size.topics} longest pydoc topics (distinct chunks)")
        started = time.perf_counter()
        corpus = embed_corpus(size.topics, embedder, settings)
        results.embed_distinct_seconds = round(time.perf_counter() - started, 1)
        results.topics = len(corpus)
        results.distinct_chunks = sum(len(topic.drafts) for topic in corpus)
        postgres = EmbeddedPostgres(state, "bench")
        postgres.start()
        try:
            asyncio.run(postgres.ensure_database())
            urls = BackendUrls(postgres.sqlalchemy_url(), REDIS_URL)
            upgrade_to_head(urls.database_url, settings.database_app_role)
            settings = settings.model_copy(update={"database_url": SecretStr(urls.database_url)})
            asyncio.run(bench(settings, urls, corpus, size, embedder=embedder, results=results))
        finally:
            postgres.stop()
    report(results)


def report(results: Results) -> None:
    def latency(row: dict[str, Any]) -> str:
        return f"{row['p50_ms']} / {row['p95_ms']} / {row['p99_ms']}"

    def stages(row: dict[str, Any], key: str = "stage_mean_ms") -> str:
        return ", ".join(f"{k} {v}" for k, v in row.get(key, {}).items())

    def threads(row: dict[str, Any]) -> str:
        return "; ".join(
            f"{name.replace('_', ' ')} {share['running']:.0%} running, "
            f"{share['waiting_for_a_core']:.0%} waiting for a core"
            for name, share in row.get("api_threads", {}).items()
        )

    def cpu(row: dict[str, Any]) -> str:
        used = ", ".join(f"{k} {v}" for k, v in row["cpu_ms_per_request"].items())
        return f"{used} (other processes: {row['other_processes_cpu_share']:.0%} of the machine)"

    rows: list[tuple[str, object]] = [
        ("cores (load average at start)", f"{results.cores} ({results.load_average_at_start})"),
        ("distinct topics / chunks", f"{results.topics} / {results.distinct_chunks}"),
        ("embedding the distinct chunks, s", results.embed_distinct_seconds),
        (
            "chunks / documents (searched organisation)",
            f"{results.chunks:,} / {results.documents:,}",
        ),
        (
            f"chunks / documents ({SMALL_ORGANIZATIONS} small organisations together)",
            f"{results.distractor_chunks:,} / {results.distractor_documents:,}",
        ),
        ("load incl. HNSW + GIN index upkeep, s", results.load_seconds),
        ("VACUUM ANALYZE, s", results.vacuum_analyze_seconds),
        ("PostgreSQL shared_buffers", results.shared_buffers),
        (
            "EXPLAIN vector query, ms (HNSW used)",
            f"{results.explain_vector_ms} ({results.hnsw_index_used})",
        ),
        ("EXPLAIN full-text query, ms", results.explain_fulltext_ms),
    ]
    for key, row in results.search.items():
        target = " (target p95 <= 30)" if key == "c8" else ""
        rows.append((f"search {key} p50/p95/p99 ms{target}", latency(row)))
        rows.append((f"search {key} requests/s", row["per_s"]))
        rows.append((f"search {key} server stage means, ms", stages(row)))
        rows.append((f"search {key} CPU ms/request", cpu(row)))
        rows.append((f"search {key} API threads", threads(row)))
    for key, row in results.answer.items():
        rows.append(
            (
                f"answer {key} first token p50/p95/p99 ms (target p95 <= 150)",
                latency(row["first_token"]),
            )
        )
        rows.append((f"answer {key} done p50/p95/p99 ms", latency(row["done"])))
        rows.append(
            (f"answer {key} server first-token mean, ms", stages(row, "server_first_token_mean_ms"))
        )
        rows.append((f"answer {key} answers/s", row["per_s"]))
        rows.append((f"answer {key} server stage means, ms", stages(row)))
        rows.append((f"answer {key} CPU ms/answer", cpu(row)))
    if results.ask:
        rows.append(("ask c1 p50/p95/p99 ms", latency(results.ask)))
    rows += [
        ("API RSS after the runs / peak, MB", f"{results.api_rss_mb} / {results.api_peak_rss_mb}"),
    ]
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label.ljust(width)}  {value}")
    print(json.dumps(results.__dict__))


if __name__ == "__main__":
    main()
