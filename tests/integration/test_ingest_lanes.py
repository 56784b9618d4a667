"""Fair ingestion: an organisation's backlog does not hold up another organisation's
upload. Documents are queued with no worker running, then one worker with one thread
takes them: the other organisation's document, queued last, is among the first done.
Runs on its own queue namespace, so the session's worker takes none of them."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from domain.entities import Document, Principal
from infrastructure.container import BackendUrls, Container
from infrastructure.database.models import DocumentRow
from infrastructure.queue.jobs import lane_of
from infrastructure.settings import Settings
from tests.conftest import WorkerProcess, worker_env
from tests.integration.test_worker_recovery import _editor, _incoming

BACKLOG = 10


@pytest.fixture
async def isolated(settings: Settings, urls: BackendUrls) -> AsyncIterator[Container]:
    own = settings.model_copy(update={"redis_key_prefix": f"lanes-{uuid.uuid4().hex[:8]}:"})
    container = Container(own, urls)
    yield container
    await container.aclose()


async def _upload(container: Container, principal: Principal, count: int) -> list[uuid.UUID]:
    files = [
        _incoming(f"notes-{i}.txt", f"Harbour log {i}: ship {uuid.uuid4()} arrived.".encode())
        for i in range(count)
    ]
    results = await container.services.documents.upload(principal, files, ip=None)
    documents = [result.document for result in results]
    assert all(isinstance(document, Document) for document in documents)
    return [document.id for document in documents if document is not None]


async def _processed_order(container: Container, ids: list[uuid.UUID]) -> list[uuid.UUID]:
    """The documents by the time they became READY, once all of them are (or a deadline
    passed: then the assertion on their statuses says so)."""
    deadline = time.monotonic() + 120
    while True:
        async with container.session_factory() as session:
            rows = (
                await session.execute(
                    select(DocumentRow.id, DocumentRow.status, DocumentRow.processed_at).where(
                        DocumentRow.id.in_(ids)
                    )
                )
            ).all()
        if all(row.status == "ready" for row in rows) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert sorted(row.status for row in rows) == ["ready"] * len(ids)
    return [row.id for row in sorted(rows, key=lambda row: row.processed_at)]


async def test_another_organisations_upload_overtakes_a_backlog(
    isolated: Container, tmp_path: Path
) -> None:
    busy = await _editor(isolated)
    other = await _editor(isolated)
    while lane_of(other.organization_id) == lane_of(busy.organization_id):
        other = await _editor(isolated)  # one in eight pairs shares a lane
    backlog = await _upload(isolated, busy, BACKLOG)
    [late] = await _upload(isolated, other, 1)
    assert await isolated.queue_depth() == BACKLOG + 1

    worker = WorkerProcess(
        worker_env(isolated.settings, FOUNDRY_WORKER_THREADS="1"), tmp_path / "worker.log"
    )
    try:
        worker.wait_started()
        order = await _processed_order(isolated, [*backlog, late])
    finally:
        worker.stop()
    # With one queue it would be last. With lanes, the worker prefetched two of the
    # backlog's messages (two per thread) before or with it, and serves them in the
    # order fetched.
    assert order.index(late) <= 2, order.index(late)


async def _distinct_lanes(container: Container, count: int) -> list[Principal]:
    editors: dict[str, Principal] = {}
    while len(editors) < count:
        editor = await _editor(container)
        editors.setdefault(lane_of(editor.organization_id), editor)
    return list(editors.values())


async def test_a_worker_does_not_hoard_jobs_from_every_lane(
    isolated: Container, tmp_path: Path
) -> None:
    """One thread may hold two jobs (Dramatiq's two per thread), plus one for each other
    lane with work: three lanes of four documents never have more than four taken and
    unfinished at once (Dramatiq's consumers alone would take six at the start)."""
    editors = await _distinct_lanes(isolated, 3)
    ids = [document for editor in editors for document in await _upload(isolated, editor, 4)]
    lanes = [f"{isolated.broker.namespace}:{lane_of(e.organization_id)}" for e in editors]
    worker = WorkerProcess(
        worker_env(isolated.settings, FOUNDRY_WORKER_THREADS="1"), tmp_path / "worker.log"
    )
    most_held = 0
    try:
        worker.wait_started()
        deadline = time.monotonic() + 120
        done = 0
        while done < len(ids) and time.monotonic() < deadline:
            # Done is read after the lists: a job finishing in between only lowers the
            # figure, so the bound is never exceeded by a slip of the sampling.
            waiting = sum([int(await isolated.redis.llen(lane)) for lane in lanes])
            async with isolated.session_factory() as session:
                done = len(
                    (
                        await session.execute(
                            select(DocumentRow.id).where(
                                DocumentRow.id.in_(ids), DocumentRow.status == "ready"
                            )
                        )
                    ).all()
                )
            most_held = max(most_held, len(ids) - waiting - done)
            await asyncio.sleep(0.01)
    finally:
        worker.stop()
    assert done == len(ids)
    assert 1 <= most_held <= 4, most_held
