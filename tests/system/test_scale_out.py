"""Scale-out: two `foundry serve` and two `foundry worker` processes, one PostgreSQL, one Redis."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import httpx
import pytest
from sqlalchemy import func, select

from infrastructure.container import Container
from infrastructure.database.models import ChunkRow, DocumentRow
from infrastructure.settings import Settings
from tests.conftest import WorkerProcess, worker_env
from tests.helpers import JSON, GraphQLClient, upload_outcomes, wait_for_document
from tests.knowledge import ORGANISATION_FILES
from tests.system.conftest import (
    ASK,
    CREATE_CHAT,
    FAST_HASHING,
    MESSAGES,
    ApiProcess,
    document_events,
    stream_answer,
)


@dataclass
class Cluster:
    apis: list[ApiProcess]
    workers: list[WorkerProcess]


@pytest.fixture(scope="module")
def cluster(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    # A key prefix of its own: no other test's worker consumes these jobs.
    scoped = settings.model_copy(
        update={"redis_key_prefix": f"foundry-scale-{uuid.uuid4().hex[:8]}:"}
    )
    env = worker_env(scoped, **FAST_HASHING, FOUNDRY_WORKER_THREADS="2")
    logs = tmp_path_factory.mktemp("scale-out")
    apis: list[ApiProcess] = []
    workers: list[WorkerProcess] = []
    try:
        for number in (1, 2):
            apis.append(ApiProcess(env, logs / f"api-{number}.log"))
            workers.append(WorkerProcess(env, logs / f"worker-{number}.log"))
        for api in apis:
            api.wait_ready()
        for worker in workers:
            worker.wait_started()
        yield Cluster(apis, workers)
    finally:
        for api in apis:
            api.stop()
        for worker in workers:
            worker.stop()


@dataclass
class Clients:
    http: list[httpx.AsyncClient]
    api: list[GraphQLClient]


@pytest.fixture
async def clients(cluster: Cluster) -> AsyncIterator[Clients]:
    https = [httpx.AsyncClient(base_url=api.base_url, timeout=60) for api in cluster.apis]
    try:
        yield Clients(https, [GraphQLClient(http) for http in https])
    finally:
        for http in https:
            await http.aclose()


def essay(topic: str, paragraphs: int = 12) -> bytes:
    """Distinct prose long enough for several chunks."""
    body = "\n\n".join(
        f"Section {n} about {topic}. The {topic} report records observation {n} in detail, "
        f"including the measured values, the people involved and the follow-up actions that "
        f"the {topic} committee agreed on during meeting number {n} of the season."
        for n in range(1, paragraphs + 1)
    )
    return f"# {topic}\n\n{body}\n".encode()


async def test_events_of_an_upload_through_one_api_reach_a_subscription_on_the_other(
    cluster: Cluster, clients: Clients
) -> None:
    account = await clients.api[0].sign_up()
    async with document_events(cluster.apis[1], account.access_token) as received:
        [outcome] = await upload_outcomes(
            clients.http[0],
            account.access_token,
            [("harbour.md", essay("harbour"), "text/markdown")],
        )
        document_id = str(cast(JSON, outcome["document"])["id"])
        for _ in range(600):
            if "READY" in received.statuses(document_id):
                break
            await asyncio.sleep(0.1)
    statuses = received.statuses(document_id)
    assert statuses[0] == "PENDING", statuses
    assert "PROCESSING" in statuses
    assert statuses[-1] == "READY"
    assert received.events[-1]["progress"] == 1.0


async def test_answers_stream_and_ask_on_either_api(cluster: Cluster, clients: Clients) -> None:
    account = await clients.api[1].sign_up()
    token = account.access_token
    outcomes = await upload_outcomes(clients.http[1], token, ORGANISATION_FILES)
    for outcome in outcomes:
        document_id = str(cast(JSON, outcome["document"])["id"])
        assert (await wait_for_document(clients.api[0], token, document_id))["status"] == "READY"

    for number, api in enumerate(cluster.apis):
        other = clients.api[1 - number]
        chat = cast(JSON, (await clients.api[number].data(CREATE_CHAT, None, token))["createChat"])
        chat_id = str(chat["id"])
        events = await stream_answer(api.ws_url, token, chat_id, "When are employees paid?")
        kinds = [event["__typename"] for event in events]
        assert kinds[0] == "AnswerSources" and kinds[-1] == "AnswerDone", kinds
        streamed = "".join(str(event["text"]) for event in events[1:-1])
        assert "last working day of each month" in streamed

        # The chat lives in the shared database: the other API answers in it too.
        asked = cast(
            JSON,
            (
                await other.data(
                    ASK, {"c": chat_id, "q": "Who built the Skerry Point lighthouse?"}, token
                )
            )["ask"],
        )
        assert "Margaret Vance" in str(asked["content"])

        stored = await clients.api[number].data(MESSAGES, {"id": chat_id}, token)
        edges = cast(list[JSON], cast(JSON, cast(JSON, stored["chat"])["messages"])["edges"])
        nodes = [cast(JSON, edge["node"]) for edge in edges]
        assert [(node["role"], node["content"]) for node in nodes] == [
            ("USER", "When are employees paid?"),
            ("ASSISTANT", streamed),
            ("USER", "Who built the Skerry Point lighthouse?"),
            ("ASSISTANT", asked["content"]),
        ]


def ingestion_outcomes(log_path: Path) -> list[tuple[str, str]]:
    """(document id, outcome) of every `ingest.document` line a worker logged."""
    outcomes: list[tuple[str, str]] = []
    for line in log_path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("event") == "ingest.document":
            outcomes.append((str(record["document_id"]), str(record["outcome"])))
    return outcomes


async def test_each_upload_is_ingested_exactly_once_by_the_two_workers(
    cluster: Cluster, clients: Clients, container: Container
) -> None:
    account = await clients.api[0].sign_up()
    token = account.access_token
    topics = [f"district-{n}-{uuid.uuid4().hex[:6]}" for n in range(8)]
    # Uploads arrive through both APIs at once.
    batches = await asyncio.gather(
        *(
            upload_outcomes(
                clients.http[n % 2], token, [(f"{topic}.md", essay(topic), "text/markdown")]
            )
            for n, topic in enumerate(topics)
        )
    )
    document_ids = [str(cast(JSON, batch[0]["document"])["id"]) for batch in batches]
    documents = [await wait_for_document(clients.api[1], token, i) for i in document_ids]
    assert {str(document["status"]) for document in documents} == {"READY"}

    async with container.session_factory() as session:
        rows = (
            await session.execute(
                select(DocumentRow.id, DocumentRow.attempts, DocumentRow.chunk_count).where(
                    DocumentRow.id.in_([uuid.UUID(i) for i in document_ids])
                )
            )
        ).all()
        counted = await session.execute(
            select(ChunkRow.document_id, func.count())
            .where(ChunkRow.document_id.in_([uuid.UUID(i) for i in document_ids]))
            .group_by(ChunkRow.document_id)
        )
        chunks = {document_id: count for document_id, count in counted.all()}
    assert len(rows) == len(document_ids)
    for document_id, attempts, chunk_count in rows:
        assert attempts == 1  # claimed once, by one worker
        assert chunk_count > 1 and chunks[document_id] == chunk_count

    outcomes = Counter(
        outcome
        for worker in cluster.workers
        for outcome in ingestion_outcomes(worker.log_path)
        if outcome[0] in document_ids
    )
    assert outcomes == Counter({(document_id, "ready"): 1 for document_id in document_ids})
