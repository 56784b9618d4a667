"""documents connection, document(id), delete, reprocess, tenants, and documentEvents."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from typing import cast

import httpx
from gql import Client, gql
from gql.transport.websockets import WebsocketsTransport
from sqlalchemy import func, select

from infrastructure.container import Container
from infrastructure.database.models import AuditLogRow, ChunkRow, DocumentRow
from infrastructure.settings import Settings
from tests.conftest import ServerThread, WorkerProcess
from tests.documents import encrypted_pdf_bytes
from tests.helpers import JSON, GraphQLClient, upload_outcomes, wait_for_document

LIST = """
query List($first: Int, $after: String, $status: DocumentStatus) {
  documents(first: $first, after: $after, status: $status) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { cursor node { id filename status } }
  }
}
"""
DELETE = "mutation($id: ID!) { deleteDocument(id: $id) }"
REPROCESS = "mutation($id: ID!) { reprocessDocument(id: $id) { id status } }"
GET = "query($id: ID!) { document(id: $id) { id status } }"
SEARCH = "query($q: String!) { search(query: $q) { document { id } } }"


async def _upload_texts(http: httpx.AsyncClient, token: str, count: int) -> list[str]:
    files = [
        (f"note-{i}.txt", f"note number {i} about tides {uuid.uuid4()}".encode(), "text/plain")
        for i in range(count)
    ]
    outcomes = await upload_outcomes(http, token, files)
    return [str(cast(JSON, o["document"])["id"]) for o in outcomes]


async def test_connection_is_newest_first_paged_and_filtered(
    http: httpx.AsyncClient, api: GraphQLClient
) -> None:
    account = await api.sign_up()
    ids: list[str] = []
    for _ in range(5):  # separate requests: distinct creation times
        ids += await _upload_texts(http, account.access_token, 1)
    first = cast(JSON, (await api.data(LIST, {"first": 2}, account.access_token))["documents"])
    assert first["totalCount"] == 5
    page_info = cast(JSON, first["pageInfo"])
    assert page_info["hasNextPage"] is True
    seen = [cast(JSON, e["node"])["id"] for e in cast(list[JSON], first["edges"])]
    after = page_info["endCursor"]
    while after:
        page = cast(
            JSON,
            (await api.data(LIST, {"first": 2, "after": after}, account.access_token))["documents"],
        )
        seen += [cast(JSON, e["node"])["id"] for e in cast(list[JSON], page["edges"])]
        info = cast(JSON, page["pageInfo"])
        after = info["endCursor"] if info["hasNextPage"] else None
    assert seen == list(reversed(ids))
    failed = cast(
        JSON, (await api.data(LIST, {"status": "FAILED"}, account.access_token))["documents"]
    )
    assert failed["totalCount"] == 0
    assert await api.error_code(LIST, {"first": 1000}, account.access_token) == "VALIDATION_FAILED"
    assert (
        await api.error_code(LIST, {"after": "garbage!"}, account.access_token)
        == "VALIDATION_FAILED"
    )


async def test_other_organizations_cannot_read_delete_or_reprocess(
    http: httpx.AsyncClient, api: GraphQLClient
) -> None:
    owner = await api.sign_up()
    stranger = await api.sign_up()
    [document_id] = await _upload_texts(http, owner.access_token, 1)
    await api.assert_not_found(GET, {"id": document_id}, stranger.access_token, "document")
    assert await api.error_code(DELETE, {"id": document_id}, stranger.access_token) == "NOT_FOUND"
    assert (
        await api.error_code(REPROCESS, {"id": document_id}, stranger.access_token) == "NOT_FOUND"
    )
    listing = cast(JSON, (await api.data(LIST, {}, stranger.access_token))["documents"])
    assert listing["totalCount"] == 0
    # Still intact for its owner.
    assert (
        cast(JSON, (await api.data(GET, {"id": document_id}, owner.access_token))["document"])["id"]
        == document_id
    )


async def test_delete_removes_blob_chunks_and_vectors_with_an_audit_row(
    http: httpx.AsyncClient,
    api: GraphQLClient,
    container: Container,
    settings: Settings,
    worker: WorkerProcess,
) -> None:
    account = await api.sign_up()
    [document_id] = await _upload_texts(http, account.access_token, 1)
    assert (await wait_for_document(api, account.access_token, document_id))["status"] == "READY"
    blob = settings.storage_dir / "blobs" / account.organization_id / document_id
    assert blob.exists()
    assert (await api.data(DELETE, {"id": document_id}, account.access_token))[
        "deleteDocument"
    ] is True
    assert not blob.exists()
    await api.assert_not_found(GET, {"id": document_id}, account.access_token, "document")
    async with container.session_factory() as session:
        chunks = await session.scalar(
            select(func.count())
            .select_from(ChunkRow)
            .where(ChunkRow.document_id == uuid.UUID(document_id))
        )
        audit = await session.scalar(
            select(AuditLogRow.action).where(
                AuditLogRow.target == f"document:{document_id}",
                AuditLogRow.action == "document.deleted",
            )
        )
    assert chunks == 0
    assert audit == "document.deleted"
    assert await api.error_code(DELETE, {"id": document_id}, account.access_token) == "NOT_FOUND"


async def test_reprocess_gives_the_same_rows_and_duplicate_jobs_change_nothing(
    http: httpx.AsyncClient, api: GraphQLClient, container: Container, worker: WorkerProcess
) -> None:
    account = await api.sign_up()
    [document_id] = await _upload_texts(http, account.access_token, 1)
    assert (await wait_for_document(api, account.access_token, document_id))["status"] == "READY"

    async def rows() -> list[tuple[object, ...]]:
        async with container.session_factory() as session:
            result = await session.execute(
                select(
                    ChunkRow.id,
                    ChunkRow.ordinal,
                    ChunkRow.text,
                    ChunkRow.char_start,
                    ChunkRow.char_end,
                )
                .where(ChunkRow.document_id == uuid.UUID(document_id))
                .order_by(ChunkRow.ordinal)
            )
            return [tuple(row) for row in result]

    before = await rows()
    for _ in range(2):  # a user's reprocess starts a fresh count of attempts
        reprocessed = await api.data(REPROCESS, {"id": document_id}, account.access_token)
        assert cast(JSON, reprocessed["reprocessDocument"])["status"] == "PENDING"
        ready = await wait_for_document(api, account.access_token, document_id)
        assert ready["status"] == "READY"
        assert await rows() == before
    async with container.session_factory() as session:
        attempts = await session.scalar(
            select(DocumentRow.attempts).where(DocumentRow.id == uuid.UUID(document_id))
        )
    assert attempts == 1

    async with container.session_factory() as session:
        updated = await session.scalar(
            select(DocumentRow.updated_at).where(DocumentRow.id == uuid.UUID(document_id))
        )
    skipped = _skips(worker, document_id)
    await container.queue.enqueue_ingest(  # a duplicate message
        uuid.UUID(document_id), uuid.UUID(account.organization_id)
    )
    # Until the worker has run it and dropped it (its "ingest.skipped" line), not merely
    # taken it off the queue: only then has it had every chance to change something.
    for _ in range(300):
        if _skips(worker, document_id) > skipped:
            break
        await asyncio.sleep(0.1)
    assert _skips(worker, document_id) == skipped + 1
    async with container.session_factory() as session:
        again = await session.scalar(
            select(DocumentRow.updated_at).where(DocumentRow.id == uuid.UUID(document_id))
        )
    assert again == updated
    assert await rows() == before


async def test_reprocessing_a_document_whose_stored_file_is_gone_is_refused_changing_nothing(
    http: httpx.AsyncClient,
    api: GraphQLClient,
    container: Container,
    settings: Settings,
    worker: WorkerProcess,
) -> None:
    """The run could only fail, and a failed run deletes the chunks that still answer: so
    the reprocess is refused with STORED_FILE_MISSING, and the document stays READY and
    found by search (no reset, no job, no audit entry)."""
    account = await api.sign_up()
    [document_id] = await _upload_texts(http, account.access_token, 1)
    assert (await wait_for_document(api, account.access_token, document_id))["status"] == "READY"
    (settings.storage_dir / "blobs" / account.organization_id / document_id).unlink()

    async def row() -> tuple[object, ...]:
        async with container.session_factory() as session:
            found = await session.execute(
                select(DocumentRow.status, DocumentRow.attempts, DocumentRow.updated_at).where(
                    DocumentRow.id == uuid.UUID(document_id)
                )
            )
            return tuple(found.one())

    before = await row()
    code = await api.error_code(REPROCESS, {"id": document_id}, account.access_token)
    assert code == "STORED_FILE_MISSING"
    assert await row() == before
    document = await api.data(GET, {"id": document_id}, account.access_token)
    assert cast(JSON, document["document"])["status"] == "READY"
    hits = cast(
        list[JSON], (await api.data(SEARCH, {"q": "tides"}, account.access_token))["search"]
    )
    assert document_id in {cast(JSON, hit["document"])["id"] for hit in hits}
    async with container.session_factory() as session:
        audited = await session.scalar(
            select(func.count())
            .select_from(AuditLogRow)
            .where(
                AuditLogRow.target == f"document:{document_id}",
                AuditLogRow.action == "document.reprocessed",
            )
        )
    assert audited == 0


def _skips(worker: WorkerProcess, document_id: str) -> int:
    """How many ingest jobs of the document the worker dropped (it was not pending)."""
    count = 0
    for line in worker.log_path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line the worker's libraries wrote, or one still being written
        if (
            isinstance(record, dict)
            and record.get("event") == "ingest.skipped"
            and record.get("document_id") == document_id
        ):
            count += 1
    return count


SUBSCRIBERS = re.compile(r"^foundry_document_event_subscribers (\S+)$", re.MULTILINE)


async def _subscribers(http: httpx.AsyncClient) -> float:
    """Open documentEvents subscriptions the server counts (once it listens on Redis)."""
    found = SUBSCRIBERS.search((await http.get("/metrics")).text)
    assert found, "no foundry_document_event_subscribers gauge"
    return float(found.group(1))


async def _until_ready(events: list[JSON], document_id: str) -> None:
    """Until ``events`` (filled by a subscription) hold the document's READY."""
    for _ in range(600):
        if any(
            cast(JSON, e["document"])["id"] == document_id
            and cast(JSON, e["document"])["status"] == "READY"
            for e in events
        ):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"no READY event for document {document_id}")


async def test_document_events_arrive_over_a_websocket(
    http: httpx.AsyncClient, api: GraphQLClient, server: ServerThread, worker: WorkerProcess
) -> None:
    account = await api.sign_up()
    stranger = await api.sign_up()
    url = server.base_url.replace("http://", "ws://") + "/graphql"

    def client(token: str) -> Client:
        return Client(
            transport=WebsocketsTransport(
                url=url,
                init_payload={"authorization": f"Bearer {token}"},
                subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
            )
        )

    subscription = gql(
        "subscription { documentEvents { document { id filename status chunkCount } progress } }"
    )
    received: list[JSON] = []
    seen_by_stranger: list[JSON] = []

    async def listen(token: str, sink: list[JSON]) -> None:
        async with client(token) as session:
            async for result in session.subscribe(subscription):
                sink.append(cast(JSON, result["documentEvents"]))

    before = await _subscribers(http)
    tasks = [
        asyncio.create_task(listen(account.access_token, received)),
        asyncio.create_task(listen(stranger.access_token, seen_by_stranger)),
    ]
    try:
        # Both subscriptions reach the server and are listening (the gauge counts a
        # subscription only once its process listens on Redis), not merely connected.
        for _ in range(300):
            if await _subscribers(http) >= before + 2:
                break
            for task in tasks:
                if task.done():
                    task.result()
                    raise AssertionError("a subscription ended before it was listening")
            await asyncio.sleep(0.1)
        assert await _subscribers(http) >= before + 2
        [document_id] = await _upload_texts(http, account.access_token, 1)
        await _until_ready(received, document_id)
        # The stranger's own document: seeing its READY proves the stranger was listening
        # all along, and comes after every event of the owner's document (one channel
        # pattern on one Redis connection: delivered in the order published).
        [strangers_own] = await _upload_texts(http, stranger.access_token, 1)
        await _until_ready(seen_by_stranger, strangers_own)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    statuses = [
        cast(JSON, e["document"])["status"]
        for e in received
        if cast(JSON, e["document"])["id"] == document_id
    ]
    assert statuses[0] == "PENDING"
    assert "PROCESSING" in statuses
    assert statuses[-1] == "READY"
    assert received[-1]["progress"] == 1.0
    assert {cast(JSON, e["document"])["id"] for e in seen_by_stranger} == {strangers_own}


FILTERED = """
query Filtered($first: Int, $after: String, $status: DocumentStatus, $filename: String) {
  documents(first: $first, after: $after, status: $status, filename: $filename) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { node { id filename } }
  }
}
"""


async def _filtered(api: GraphQLClient, token: str, **variables: object) -> JSON:
    return cast(JSON, (await api.data(FILTERED, variables, token))["documents"])


def _names(connection: JSON) -> set[str]:
    return {str(cast(JSON, e["node"])["filename"]) for e in cast(list[JSON], connection["edges"])}


async def test_filename_filter_is_a_case_insensitive_literal_substring(
    http: httpx.AsyncClient, api: GraphQLClient, worker: WorkerProcess
) -> None:
    account = await api.sign_up()
    stranger = await api.sign_up()
    token = account.access_token
    names = ["Annual REPORT 2025.txt", "report_final.txt", "reportXfinal.txt", "100% growth.txt"]
    files = [(name, f"{name} {uuid.uuid4()}".encode(), "text/plain") for name in names]
    files.append(("notes.txt", f"plain notes {uuid.uuid4()}".encode(), "text/plain"))
    files.append(("Café menu.txt", f"menu {uuid.uuid4()}".encode(), "text/plain"))
    outcomes = await upload_outcomes(http, token, files)
    ids = {str(o["filename"]): str(cast(JSON, o["document"])["id"]) for o in outcomes}
    # A report that fails (encrypted), to combine the filter with a status.
    [locked] = await upload_outcomes(
        http, token, [("Report locked.pdf", encrypted_pdf_bytes(), "application/pdf")]
    )
    locked_id = str(cast(JSON, locked["document"])["id"])
    await upload_outcomes(
        http, stranger.access_token, [("report of the stranger.txt", b"theirs", "text/plain")]
    )
    for document_id in [*ids.values(), locked_id]:
        await wait_for_document(api, token, document_id)

    reports = {
        "Annual REPORT 2025.txt",
        "report_final.txt",
        "reportXfinal.txt",
        "Report locked.pdf",
    }
    for text in ["report", "REPORT", "rEpOrT"]:
        found = await _filtered(api, token, filename=text)
        assert _names(found) == reports
        assert found["totalCount"] == 4
    # LIKE's wildcards and its escape character match only themselves.
    assert _names(await _filtered(api, token, filename="t_f")) == {"report_final.txt"}
    assert _names(await _filtered(api, token, filename="%")) == {"100% growth.txt"}
    assert _names(await _filtered(api, token, filename="0%")) == {"100% growth.txt"}
    assert _names(await _filtered(api, token, filename="\\_")) == set()
    assert _names(await _filtered(api, token, filename="\\")) == set()
    # Empty or blank: no filter.
    for blank in ["", "   ", None]:
        assert (await _filtered(api, token, filename=blank))["totalCount"] == 7
    # Surrounding spaces are ignored; case folds beyond ASCII too.
    assert _names(await _filtered(api, token, filename="  CAFÉ ")) == {"Café menu.txt"}
    # Combined with status (AND), counted as filtered.
    failed = await _filtered(api, token, filename="report", status="FAILED")
    assert _names(failed) == {"Report locked.pdf"} and failed["totalCount"] == 1
    ready = await _filtered(api, token, filename="REPORT", status="READY")
    assert _names(ready) == reports - {"Report locked.pdf"} and ready["totalCount"] == 3
    assert (await _filtered(api, token, filename="notes", status="FAILED"))["totalCount"] == 0
    # Another organisation's documents never match, and ours never match for it.
    assert (await _filtered(api, token, filename="stranger"))["totalCount"] == 0
    theirs = await _filtered(api, stranger.access_token, filename="report")
    assert _names(theirs) == {"report of the stranger.txt"} and theirs["totalCount"] == 1


async def test_filename_filter_pages_with_cursors(
    http: httpx.AsyncClient, api: GraphQLClient
) -> None:
    account = await api.sign_up()
    token = account.access_token
    files = [
        (f"{prefix}-{i}.txt", f"{prefix} {i} {uuid.uuid4()}".encode(), "text/plain")
        for i in range(3)
        for prefix in ("invoice", "memo")
    ]
    await upload_outcomes(http, token, files)
    everything = await _filtered(api, token, first=100)
    newest_first = [
        str(cast(JSON, e["node"])["id"])
        for e in cast(list[JSON], everything["edges"])
        if str(cast(JSON, e["node"])["filename"]).startswith("invoice")
    ]
    first = await _filtered(api, token, first=2, filename="INVOICE")
    assert first["totalCount"] == 3
    assert cast(JSON, first["pageInfo"])["hasNextPage"] is True
    after = cast(JSON, first["pageInfo"])["endCursor"]
    second = await _filtered(api, token, first=2, after=after, filename="INVOICE")
    assert second["totalCount"] == 3
    assert cast(JSON, second["pageInfo"])["hasNextPage"] is False
    seen = [
        str(cast(JSON, e["node"])["id"])
        for page in (first, second)
        for e in cast(list[JSON], page["edges"])
    ]
    assert seen == newest_first
    # A cursor is a position: one made without the filter works with it, and back.
    unfiltered_page = await _filtered(api, token, first=1)
    position = cast(JSON, unfiltered_page["pageInfo"])["endCursor"]
    after_position = await _filtered(api, token, after=position, filename="memo")
    assert _names(after_position) <= {f"memo-{i}.txt" for i in range(3)}
    assert after_position["totalCount"] == 3
    assert (await _filtered(api, token, after=after, filename="memo"))["edges"] is not None


async def test_filename_filter_length_is_limited(api: GraphQLClient) -> None:
    token = (await api.sign_up()).access_token
    assert (await _filtered(api, token, filename="x" * 255))["totalCount"] == 0
    # The limit applies to what is left once surrounding spaces are trimmed.
    assert (await _filtered(api, token, filename="  " + "x" * 255 + " "))["totalCount"] == 0
    body = await api.execute(FILTERED, {"filename": "x" * 256}, token)
    errors = cast(list[JSON], body["errors"])
    extensions = cast(JSON, errors[0]["extensions"])
    assert extensions["code"] == "VALIDATION_FAILED"
    assert extensions["field"] == "filename"
