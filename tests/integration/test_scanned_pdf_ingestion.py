"""A PDF with pages but no text, uploaded over HTTP and ingested by a real worker (its
parse sandbox included), ends FAILED with NO_TEXT_LAYER on its first attempt: a bad file,
never retried; an empty upload is still EMPTY_DOCUMENT."""

from __future__ import annotations

import uuid
from typing import cast

import httpx
from sqlalchemy import select

from infrastructure.container import Container
from infrastructure.database.models import DocumentRow
from tests.conftest import WorkerProcess
from tests.documents import blank_pdf_bytes, scanned_pdf_bytes
from tests.helpers import JSON, GraphQLClient, upload_outcomes, wait_for_document


async def _attempts(container: Container, document_id: str) -> tuple[str, str | None, int]:
    async with container.session_factory() as session:
        row = (
            await session.execute(
                select(DocumentRow.status, DocumentRow.error_code, DocumentRow.attempts).where(
                    DocumentRow.id == uuid.UUID(document_id)
                )
            )
        ).one()
    return row.status, row.error_code, row.attempts


async def test_a_pdf_without_a_text_layer_fails_once_with_no_text_layer(
    http: httpx.AsyncClient, api: GraphQLClient, container: Container, worker: WorkerProcess
) -> None:
    account = await api.sign_up()
    outcomes = await upload_outcomes(
        http,
        account.access_token,
        [
            ("blank.pdf", blank_pdf_bytes(pages=2), "application/pdf"),
            ("scan.pdf", scanned_pdf_bytes(pages=2), "application/pdf"),
            ("empty.pdf", b"", "application/pdf"),
        ],
    )
    assert [o["error"] for o in outcomes[:2]] == [None, None]
    # A file with no bytes at all is refused at upload, with the older code.
    assert cast(JSON, outcomes[2]["error"])["code"] == "EMPTY_DOCUMENT"
    for outcome in outcomes[:2]:
        document_id = cast(str, cast(JSON, outcome["document"])["id"])
        shown = await wait_for_document(api, account.access_token, document_id)
        assert (shown["status"], shown["errorCode"]) == ("FAILED", "NO_TEXT_LAYER"), outcome
        assert shown["chunkCount"] == 0
        # Failed on the first claim, as a bad file: a failure taken for a transient one
        # would have gone back to pending and been claimed again (attempts 2, 3...).
        assert await _attempts(container, document_id) == ("failed", "NO_TEXT_LAYER", 1)
