"""Upload -> real Dramatiq worker -> READY, for every format, checked in the database."""

from __future__ import annotations

import uuid
from typing import cast

import httpx
from sqlalchemy import select

from infrastructure.container import Container
from infrastructure.database.models import ChunkRow
from tests.conftest import WorkerProcess
from tests.documents import HTML, LATIN1_TEXT, MARKDOWN, docx_bytes, pdf_bytes
from tests.helpers import JSON, GraphQLClient, upload_outcomes, wait_for_document

DOCX_MIME = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


async def _chunks(container: Container, document_id: object) -> list[ChunkRow]:
    async with container.session_factory() as session:
        rows = await session.scalars(
            select(ChunkRow)
            .where(ChunkRow.document_id == uuid.UUID(str(document_id)))
            .order_by(ChunkRow.ordinal)
        )
        return list(rows)


async def _text(container: Container, document_id: object) -> str:
    return " ".join(chunk.text for chunk in await _chunks(container, document_id))


async def test_every_format_becomes_ready_with_chunks_and_vectors(
    http: httpx.AsyncClient, api: GraphQLClient, container: Container, worker: WorkerProcess
) -> None:
    account = await api.sign_up()
    files = [
        ("keeper.pdf", pdf_bytes(pages=3), "application/pdf"),
        (
            "handbook.docx",
            docx_bytes(),
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ),
        ("tides.md", MARKDOWN.encode(), "text/markdown"),
        ("harbour.html", HTML.encode(), "text/html"),
        ("cafe.txt", LATIN1_TEXT, "text/plain"),
    ]
    outcomes = await upload_outcomes(http, account.access_token, files)
    assert [o["error"] for o in outcomes] == [None] * 5
    documents = {cast(str, o["filename"]): cast(JSON, o["document"]) for o in outcomes}
    assert all(d["status"] == "PENDING" for d in documents.values())

    ready = {
        name: await wait_for_document(api, account.access_token, cast(str, d["id"]))
        for name, d in documents.items()
    }
    for name, document in ready.items():
        assert document["status"] == "READY", (name, document)
        assert cast(int, document["chunkCount"]) >= 1
        assert document["processedAt"] is not None
    assert ready["keeper.pdf"]["pageCount"] == 3
    assert ready["tides.md"]["pageCount"] is None

    pdf_chunks = await _chunks(container, cast(str, documents["keeper.pdf"]["id"]))
    assert {c.page for c in pdf_chunks} == {1, 2, 3}
    vectors = [list(c.embedding) for c in pdf_chunks if c.embedding is not None]
    assert len(vectors) == len(pdf_chunks)
    assert all(len(vector) == 384 for vector in vectors)
    assert abs(sum(x * x for x in vectors[0]) - 1.0) < 1e-3  # unit length
    assert all(c.token_count <= 240 for c in pdf_chunks)
    assert "lighthouse" in pdf_chunks[0].text.lower()

    html_text = await _text(container, documents["harbour.html"]["id"])
    assert "eastern quay" in html_text
    assert "alert" not in html_text and "color:red" not in html_text
    docx_text = await _text(container, documents["handbook.docx"]["id"])
    assert "Supply boats" in docx_text and "40 litres" in docx_text
    latin = await _text(container, documents["cafe.txt"]["id"])
    assert "Café crème" in latin and "été" in latin
    tides = await _chunks(container, documents["tides.md"]["id"])
    assert "tide" in str(tides[0].tsv)
