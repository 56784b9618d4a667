"""Bad uploads get their codes and leave nothing half-written; roles and tenants hold."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from pathlib import Path
from typing import cast

import httpx
from sqlalchemy import func, select

from infrastructure.container import Container
from infrastructure.database.models import ChunkRow, DocumentRow
from infrastructure.settings import Settings
from tests.api.test_members import ADD
from tests.conftest import WorkerProcess
from tests.documents import (
    docx_zip_bomb_bytes,
    encrypted_pdf_bytes,
    pdf_bytes,
    truncated_pdf_bytes,
)
from tests.helpers import (
    JSON,
    UPLOAD,
    GraphQLClient,
    upload,
    upload_outcomes,
    wait_for_document,
)


def _error(outcome: JSON) -> str | None:
    error = cast(JSON | None, outcome["error"])
    return cast(str, error["code"]) if error else None


async def _document_rows(container: Container, organization_id: str) -> int:
    async with container.session_factory() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(DocumentRow)
            .where(DocumentRow.organization_id == uuid.UUID(organization_id))
        )
    return int(count or 0)


def _staging_files(settings: Settings) -> list[Path]:
    return list((settings.storage_dir / "staging").iterdir())


async def test_rejected_uploads_have_codes_and_leave_nothing(
    http: httpx.AsyncClient, api: GraphQLClient, container: Container, settings: Settings
) -> None:
    account = await api.sign_up()
    files = [
        ("setup.pdf", b"MZ\x90\x00" + b"\x00" * 200, "application/pdf"),  # an executable renamed
        ("empty.txt", b"", "text/plain"),
        ("huge.txt", b"a" * (settings.upload_max_file_bytes + 1), "text/plain"),
        ("notes.exe", b"hello", "application/octet-stream"),
        ("report.pdf", b"%PDF-1.7 fake", "text/html"),  # declared type disagrees
        ("page.html", b"just words, no markup", "text/html"),
        ("image.txt", b"\x89PNG\r\n\x1a\n" + b"\x00" * 50, "text/plain"),
    ]
    outcomes = await upload_outcomes(http, account.access_token, files)
    assert [_error(o) for o in outcomes] == [
        "UNSUPPORTED_FILE_TYPE",
        "EMPTY_DOCUMENT",
        "FILE_TOO_LARGE",
        "UNSUPPORTED_FILE_TYPE",
        "UNSUPPORTED_FILE_TYPE",
        "UNSUPPORTED_FILE_TYPE",
        "UNSUPPORTED_FILE_TYPE",
    ]
    assert all(o["document"] is None for o in outcomes)
    assert await _document_rows(container, account.organization_id) == 0
    assert _staging_files(settings) == []


async def test_good_and_bad_files_in_one_request(
    http: httpx.AsyncClient, api: GraphQLClient
) -> None:
    account = await api.sign_up()
    outcomes = await upload_outcomes(
        http,
        account.access_token,
        [
            ("a.txt", b"first good file about harbours", "text/plain"),
            ("bad.pdf", b"not a pdf", "application/pdf"),
            ("b.md", b"# second good file", "text/markdown"),
        ],
    )
    assert [_error(o) for o in outcomes] == [None, "UNSUPPORTED_FILE_TYPE", None]


def _not_a_file(body: JSON, position: int) -> None:
    [error] = cast(list[JSON], body["errors"])
    assert error["extensions"] == {"code": "VALIDATION_FAILED", "field": "files"}, body
    assert str(error["message"]).startswith(f"files[{position}] is not a file"), body
    assert body["data"] is None, body


async def test_values_that_are_not_files_are_refused_as_invalid(
    http: httpx.AsyncClient, api: GraphQLClient, container: Container
) -> None:
    """The Upload scalar takes any value; only files of a multipart request are files."""
    account = await api.sign_up()
    token = account.access_token
    literal = 'mutation { uploadDocuments(files: ["x"]) { filename } }'
    _not_a_file(await api.execute(literal, {}, token), 0)
    variable = "mutation($f: [Upload!]!) { uploadDocuments(files: $f) { filename } }"
    _not_a_file(await api.execute(variable, {"f": [{}]}, token), 0)
    # A multipart map may point a variable at a plain form field instead of a file part.
    operations = {"query": UPLOAD, "variables": {"files": [None, None]}}
    mapping = {"0": ["variables.files.0"], "1": ["variables.files.1"]}
    response = await http.post(
        "/graphql",
        files=[
            ("operations", (None, json.dumps(operations), None)),
            ("map", (None, json.dumps(mapping), None)),
            ("0", ("a.txt", b"a real file about lighthouses", "text/plain")),
            ("1", (None, "just a form field", None)),
        ],
        headers={"authorization": f"Bearer {token}", "x-requested-with": "foundry"},
    )
    assert response.status_code == 200, response.text
    _not_a_file(cast(JSON, response.json()), 1)
    # Refused as a whole: not even the real file was stored.
    assert await _document_rows(container, account.organization_id) == 0


async def test_path_traversal_filenames_are_display_data_only(
    http: httpx.AsyncClient, api: GraphQLClient, container: Container, settings: Settings
) -> None:
    account = await api.sign_up()
    outcomes = await upload_outcomes(
        http, account.access_token, [("../../etc/passwd.txt", b"root:x:0:0", "text/plain")]
    )
    document = cast(JSON, outcomes[0]["document"])
    assert document["filename"] == "passwd.txt"
    async with container.session_factory() as session:
        key = await session.scalar(
            select(DocumentRow.storage_key).where(DocumentRow.id == uuid.UUID(str(document["id"])))
        )
    assert key == f"{account.organization_id}/{document['id']}"
    blob = settings.storage_dir / "blobs" / str(key)
    assert blob.read_bytes() == b"root:x:0:0"
    assert oct(blob.stat().st_mode & 0o777) == "0o600"
    assert oct(blob.parent.stat().st_mode & 0o777) == "0o700"


async def test_duplicate_content_names_the_existing_document(
    http: httpx.AsyncClient, api: GraphQLClient
) -> None:
    account = await api.sign_up()
    first = await upload_outcomes(
        http, account.access_token, [("a.txt", b"same bytes", "text/plain")]
    )
    again = await upload(http, account.access_token, [("b.txt", b"same bytes", "text/plain")])
    outcome = again.json()["data"]["uploadDocuments"][0]
    existing = cast(JSON, first[0]["document"])["id"]
    assert outcome["error"]["code"] == "DUPLICATE_DOCUMENT"
    assert str(existing) in outcome["error"]["message"]
    assert outcome["error"]["documentId"] == existing
    # Another organisation may upload the same content.
    other = await api.sign_up()
    elsewhere = await upload_outcomes(
        http, other.access_token, [("c.txt", b"same bytes", "text/plain")]
    )
    assert elsewhere[0]["error"] is None


async def test_concurrent_identical_uploads_all_name_the_winner(
    http: httpx.AsyncClient, api: GraphQLClient
) -> None:
    account = await api.sign_up()
    content = f"racing bytes {uuid.uuid4()}".encode()
    responses = await asyncio.gather(
        *(
            upload(http, account.access_token, [(f"r{i}.txt", content, "text/plain")])
            for i in range(4)
        )
    )
    outcomes = [r.json()["data"]["uploadDocuments"][0] for r in responses]
    winners = [o["document"]["id"] for o in outcomes if o["document"]]
    assert len(winners) == 1
    for outcome in outcomes:
        if outcome["error"]:
            assert outcome["error"]["code"] == "DUPLICATE_DOCUMENT"
            assert winners[0] in outcome["error"]["message"]
            assert outcome["error"]["documentId"] == winners[0]


async def test_a_pdf_that_crashes_the_parser_fails_with_parse_failed(
    http: httpx.AsyncClient, api: GraphQLClient, worker: WorkerProcess
) -> None:
    account = await api.sign_up()
    broken = pdf_bytes(1).replace(b"/FlateDecode", b"/FlateDeXode")  # pypdf: NotImplementedError
    outcomes = await upload_outcomes(
        http, account.access_token, [("odd.pdf", broken, "application/pdf")]
    )
    document_id = str(cast(JSON, outcomes[0]["document"])["id"])
    result = await wait_for_document(api, account.access_token, document_id)
    assert (result["status"], result["errorCode"]) == ("FAILED", "PARSE_FAILED")


async def test_viewers_cannot_upload_and_csrf_header_is_required(
    http: httpx.AsyncClient, api: GraphQLClient
) -> None:
    owner = await api.sign_up()
    viewer = await api.sign_up()
    await api.data(ADD, {"e": viewer.email, "r": "VIEWER"}, owner.access_token)
    session = await api.log_in(viewer.email, organization_id=owner.organization_id)
    refused = await upload(http, session.access_token, [("a.txt", b"x", "text/plain")])
    assert refused.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    no_csrf = await upload(http, owner.access_token, [("a.txt", b"x", "text/plain")], csrf=False)
    assert no_csrf.status_code == 400
    assert no_csrf.json()["errors"][0]["extensions"]["code"] == "CSRF_CHECK_FAILED"
    # Anonymous multipart bodies are refused before anything is parsed or spooled.
    anonymous = await http.post(
        "/graphql",
        files={"operations": (None, '{"query": "{ __typename }"}'), "map": (None, "{}")},
        headers={"x-requested-with": "foundry"},
    )
    assert anonymous.status_code == 401
    assert anonymous.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    forged = await upload(http, "forged.token.value", [("a.txt", b"x", "text/plain")])
    assert forged.status_code == 401


async def test_too_many_files_in_one_request(
    http: httpx.AsyncClient, api: GraphQLClient, settings: Settings
) -> None:
    account = await api.sign_up()
    files = [
        (f"f{i}.txt", f"file {i}".encode(), "text/plain")
        for i in range(settings.upload_max_files + 1)
    ]
    # The multipart parser itself stops at the limit: nothing more is spooled.
    response = await upload(http, account.access_token, files)
    assert response.status_code == 400
    [error] = response.json()["errors"]
    limit = settings.upload_max_files
    assert error["extensions"] == {"code": "TOO_MANY_FILES", "maxFiles": limit}
    assert error["message"] == f"Send at most {limit} files per request."


async def test_bad_documents_fail_with_codes_and_no_chunks(
    http: httpx.AsyncClient, api: GraphQLClient, container: Container, worker: WorkerProcess
) -> None:
    account = await api.sign_up()
    outcomes = await upload_outcomes(
        http,
        account.access_token,
        [
            ("truncated.pdf", truncated_pdf_bytes(), "application/pdf"),
            ("locked.pdf", encrypted_pdf_bytes(), "application/pdf"),
            ("bomb.docx", docx_zip_bomb_bytes(), "application/octet-stream"),
            ("blank.pdf", _blank_pdf(), "application/pdf"),
        ],
    )
    assert [_error(o) for o in outcomes] == [None, None, None, None]
    results = [
        await wait_for_document(api, account.access_token, str(cast(JSON, o["document"])["id"]))
        for o in outcomes
    ]
    assert [(r["status"], r["errorCode"]) for r in results] == [
        ("FAILED", "PARSE_FAILED"),
        ("FAILED", "ENCRYPTED_PDF"),
        ("FAILED", "DOCUMENT_TOO_LARGE"),
        ("FAILED", "NO_TEXT_LAYER"),  # a blank page: pages, but no text
    ]
    async with container.session_factory() as session:
        chunks = await session.scalar(
            select(func.count())
            .select_from(ChunkRow)
            .where(ChunkRow.organization_id == uuid.UUID(account.organization_id))
        )
    assert chunks == 0


def _blank_pdf() -> bytes:
    from fpdf import FPDF

    document = FPDF()
    document.add_page()
    return bytes(document.output())


async def test_a_pdf_is_ready_with_its_pages(
    http: httpx.AsyncClient, api: GraphQLClient, worker: WorkerProcess
) -> None:
    account = await api.sign_up()
    outcomes = await upload_outcomes(
        http, account.access_token, [("ten.pdf", pdf_bytes(10), "application/pdf")]
    )
    ready = await wait_for_document(
        api, account.access_token, str(cast(JSON, outcomes[0]["document"])["id"])
    )
    assert ready["status"] == "READY"
    assert ready["pageCount"] == 10


async def test_a_storage_failure_is_a_per_file_error_and_leaves_nothing(
    http: httpx.AsyncClient, api: GraphQLClient, container: Container, settings: Settings
) -> None:
    """The disk refusing a file fails that file, with a code, not the whole request."""
    account = await api.sign_up()
    # Where the organisation's blobs would go, a file: every write there fails (OSError).
    blocker = settings.storage_dir / "blobs" / account.organization_id
    blocker.write_text("")
    try:
        files = [
            ("a.txt", b"first file", "text/plain"),
            ("b.txt", b"second file", "text/plain"),
        ]
        outcomes = await upload_outcomes(http, account.access_token, files)
        assert [_error(o) for o in outcomes] == ["SERVICE_UNAVAILABLE"] * 2
        assert await _document_rows(container, account.organization_id) == 0
        assert _staging_files(settings) == []
    finally:
        blocker.unlink()
    again = await upload_outcomes(http, account.access_token, files)
    assert [_error(o) for o in again] == [None, None]


def _spooled_files() -> set[str]:
    """This process's open files that were deleted on creation, as spooled uploads are
    (the test server runs in this process)."""
    held = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.endswith("(deleted)"):
            held.add(target)
    return held


async def test_a_refused_upload_leaves_no_spooled_file_open(
    http: httpx.AsyncClient, api: GraphQLClient
) -> None:
    account = await api.sign_up()
    before = _spooled_files()
    # Over Starlette's 1 MB in memory, so spooled to disk; refused by type, then by size.
    for name, size in (("tool.exe", 1_500_000), ("big.txt", 2_500_000)):
        body = b"MZ" + b"\0" * size if name.endswith(".exe") else b"word " * (size // 5)
        response = await upload(
            http, account.access_token, [(name, body, "application/octet-stream")]
        )
        assert response.status_code == 200
        [outcome] = response.json()["data"]["uploadDocuments"]
        assert outcome["error"]["code"] in ("UNSUPPORTED_FILE_TYPE", "FILE_TOO_LARGE"), outcome
    assert _spooled_files() - before == set()
