"""GET /documents/{id}/file: the uploaded original, to its organisation's members only."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import uuid
from pathlib import Path
from typing import cast
from urllib.parse import quote

import httpx
import jwt
import pytest
from fpdf import FPDF
from PIL import Image

from domain.ingestion.ports import BlobStore
from infrastructure.container import BackendUrls
from infrastructure.http import document_files
from infrastructure.http.document_files import (
    CHUNK_BYTES,
    OpenedFile,
    content_disposition,
    read_chunks,
)
from infrastructure.settings import Settings
from tests.api.test_api_keys import create_key
from tests.api.test_rate_limits import connect, released, start_limited_server
from tests.conftest import TEST_JWT_SECRET, ServerThread, WorkerProcess, free_port
from tests.helpers import JSON, Account, GraphQLClient, upload_outcomes, wait_for_document

PATH = "query($id: ID!) { document(id: $id) { id downloadPath } }"
DELETE = "mutation($id: ID!) { deleteDocument(id: $id) }"
LIST = "{ documents(first: 5) { edges { node { id downloadPath } } } }"


def _noisy_pdf() -> bytes:
    """A one-page PDF of a few hundred KB (an incompressible image), several chunks long,
    with little text for the worker to embed."""
    document = FPDF()
    document.set_font("Helvetica", size=12)
    document.add_page()
    document.multi_cell(0, 8, "Harbour survey. The tide gauge was replaced in March.")
    noise = Image.frombytes("RGB", (400, 400), os.urandom(400 * 400 * 3))
    document.image(noise, x=10, y=40, w=100)
    return bytes(document.output())


async def _upload(http: httpx.AsyncClient, token: str, name: str, data: bytes, mime: str) -> str:
    [outcome] = await upload_outcomes(http, token, [(name, data, mime)])
    assert outcome["error"] is None, outcome
    return str(cast(JSON, outcome["document"])["id"])


def _auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def _error(response: httpx.Response) -> JSON:
    assert response.headers["content-type"] == "application/json", response.text
    [error] = cast(list[JSON], response.json()["errors"])
    return error


def _code(response: httpx.Response) -> str:
    return str(cast(JSON, _error(response)["extensions"])["code"])


NOT_FOUND = {"errors": [{"message": "No such document.", "extensions": {"code": "NOT_FOUND"}}]}


async def test_the_owner_downloads_the_exact_bytes_of_a_ready_document(
    http: httpx.AsyncClient, api: GraphQLClient, worker: WorkerProcess
) -> None:
    account = await api.sign_up()
    data = _noisy_pdf()
    assert len(data) > 4 * CHUNK_BYTES
    name = "Rapport d\u2019\u00e9t\u00e9 \u201cfinal\u201d 2024.pdf"
    document_id = await _upload(http, account.access_token, name, data, "application/pdf")
    ready = await wait_for_document(api, account.access_token, document_id)
    assert (ready["status"], ready["filename"]) == ("READY", name)
    found = await api.data(PATH, {"id": document_id}, account.access_token)
    path = cast(JSON, found["document"])["downloadPath"]
    assert path == f"/documents/{document_id}/file"

    async with http.stream("GET", str(path), headers=_auth(account.access_token)) as response:
        assert response.status_code == 200
        received = [chunk async for chunk in response.aiter_raw()]
    assert b"".join(received) == data
    headers = response.headers
    assert headers["content-type"] == "application/pdf"
    assert headers["content-length"] == str(len(data))
    assert "transfer-encoding" not in headers
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["cache-control"] == "private, no-store"
    assert headers["content-disposition"] == (
        'attachment; filename="Rapport d_ete _final_ 2024.pdf"; '
        f"filename*=UTF-8''{quote(name, safe='')}"
    )
    # The header as a browser reads it: filename* (RFC 5987) gives back the exact name.
    encoded = headers["content-disposition"].split("filename*=UTF-8''", 1)[1]
    assert httpx.URL("/?n=" + encoded).params["n"] == name

    head = await http.head(str(path), headers=_auth(account.access_token))
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(data))


async def test_a_text_file_keeps_its_bytes_and_type(
    http: httpx.AsyncClient, api: GraphQLClient
) -> None:
    account = await api.sign_up()
    data = "Tide tables, Latin-1 style: caf\xe9\r\nsecond line\n".encode("latin-1")
    document_id = await _upload(http, account.access_token, "plain.txt", data, "text/plain")
    response = await http.get(f"/documents/{document_id}/file", headers=_auth(account.access_token))
    assert response.status_code == 200
    assert response.content == data
    # No charset is claimed: the stored bytes are in whatever encoding was uploaded.
    assert response.headers["content-type"] == "text/plain"
    assert response.headers["content-disposition"] == 'attachment; filename="plain.txt"'


async def test_a_viewer_and_an_api_key_may_download(
    http: httpx.AsyncClient, api: GraphQLClient
) -> None:
    owner = await api.sign_up()
    data = f"viewer notes {uuid.uuid4()}".encode()
    document_id = await _upload(http, owner.access_token, "notes.md", data, "text/markdown")
    member = await api.sign_up()
    await api.add_member(owner, member.email, "VIEWER")
    viewer = await api.log_in(member.email, owner.organization_id)
    url = f"/documents/{document_id}/file"
    response = await http.get(url, headers=_auth(viewer.access_token))
    assert (response.status_code, response.content) == (200, data)
    key, _ = await create_key(api, owner, role="VIEWER", name="reader")
    response = await http.get(url, headers=_auth(key))
    assert (response.status_code, response.content) == (200, data)


async def test_another_organisation_gets_the_same_404_as_for_no_document(
    http: httpx.AsyncClient, api: GraphQLClient
) -> None:
    owner = await api.sign_up()
    document_id = await _upload(http, owner.access_token, "secret.txt", b"our secret", "text/plain")
    stranger = await api.sign_up()
    answers = [
        await http.get(f"/documents/{some_id}/file", headers=_auth(stranger.access_token))
        for some_id in (document_id, str(uuid.uuid4()), "not-a-uuid", "%20", "1' OR '1'='1")
    ]
    for response in answers:
        assert response.status_code == 404, response.text
        assert response.json() == NOT_FOUND
        assert response.headers["cache-control"] == "private, no-store"
    # The stranger's own listing does not hand out the path either.
    listed = await api.data(LIST, token=stranger.access_token)
    assert cast(JSON, listed["documents"])["edges"] == []


async def test_a_deleted_document_is_gone(http: httpx.AsyncClient, api: GraphQLClient) -> None:
    account = await api.sign_up()
    document_id = await _upload(http, account.access_token, "old.txt", b"old words", "text/plain")
    url = f"/documents/{document_id}/file"
    assert (await http.get(url, headers=_auth(account.access_token))).status_code == 200
    assert (await api.data(DELETE, {"id": document_id}, account.access_token))["deleteDocument"]
    response = await http.get(url, headers=_auth(account.access_token))
    assert (response.status_code, response.json()) == (404, NOT_FOUND)


async def test_a_document_deleted_while_its_download_starts_is_not_found(
    http: httpx.AsyncClient, api: GraphQLClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Looked up, then deleted (its file removed) before the file is opened: the same
    NOT_FOUND as any deleted id, not STORED_FILE_MISSING ("the row exists")."""
    account = await api.sign_up()
    document_id = await _upload(http, account.access_token, "gone.txt", b"gone", "text/plain")
    opening, go_on = threading.Event(), threading.Event()
    real_open = document_files.open_stored

    def open_after_the_delete(blobs: BlobStore, key: str) -> document_files.OpenedFile:
        opening.set()
        go_on.wait(10)
        return real_open(blobs, key)

    monkeypatch.setattr(document_files, "open_stored", open_after_the_delete)
    url = f"/documents/{document_id}/file"
    download = asyncio.create_task(http.get(url, headers=_auth(account.access_token)))
    assert await asyncio.to_thread(opening.wait, 10)
    assert (await api.data(DELETE, {"id": document_id}, account.access_token))["deleteDocument"]
    go_on.set()
    response = await download
    assert (response.status_code, response.json()) == (404, NOT_FOUND)


async def test_a_missing_stored_file_says_so(
    http: httpx.AsyncClient, api: GraphQLClient, settings: Settings
) -> None:
    account = await api.sign_up()
    document_id = await _upload(http, account.access_token, "lost.txt", b"lost words", "text/plain")
    blob = settings.storage_dir / "blobs" / account.organization_id / document_id
    blob.unlink()
    response = await http.get(f"/documents/{document_id}/file", headers=_auth(account.access_token))
    assert response.status_code == 404
    assert _code(response) == "STORED_FILE_MISSING"


def _expired_token(account: Account) -> str:
    claims = jwt.decode(account.access_token, options={"verify_signature": False})
    past = int(time.time()) - 3_600
    expired = {**claims, "iat": past, "iat_ms": past * 1000, "nbf": past, "exp": past + 60}
    return jwt.encode(expired, TEST_JWT_SECRET, algorithm="HS256")


async def test_no_or_a_bad_token_is_401(http: httpx.AsyncClient, api: GraphQLClient) -> None:
    account = await api.sign_up()
    document_id = await _upload(http, account.access_token, "a.txt", b"some words", "text/plain")
    url = f"/documents/{document_id}/file"
    cases = [
        ({}, "UNAUTHENTICATED"),
        ({"authorization": account.access_token}, "UNAUTHENTICATED"),  # no "Bearer"
        (_auth("garbage"), "UNAUTHENTICATED"),
        (_auth("kf_not_a_real_key"), "UNAUTHENTICATED"),
        (_auth(_expired_token(account)), "TOKEN_EXPIRED"),
    ]
    for headers, code in cases:
        response = await http.get(url, headers=headers)
        assert response.status_code == 401, response.text
        assert _code(response) == code
        assert response.headers["www-authenticate"] == "Bearer"
    # Logged out: the session's access token no longer downloads anything.
    await api.data(
        "mutation($t: String!) { logOut(refreshToken: $t) }", {"t": account.refresh_token}
    )
    response = await http.get(url, headers=_auth(account.access_token))
    assert (response.status_code, _code(response)) == (401, "UNAUTHENTICATED")


async def test_a_session_that_cannot_be_checked_is_503(
    settings: Settings, urls: BackendUrls, http: httpx.AsyncClient, api: GraphQLClient
) -> None:
    """Redis down: the token may be good, so not 401 (clients would log in again)."""
    account = await api.sign_up()
    document_id = await _upload(http, account.access_token, "b.txt", b"more words", "text/plain")
    cut_off = ServerThread(
        settings, BackendUrls(urls.database_url, f"redis://127.0.0.1:{free_port()}/0")
    )
    cut_off.start()
    try:
        async with httpx.AsyncClient(base_url=cut_off.base_url, timeout=30) as client:
            response = await client.get(
                f"/documents/{document_id}/file", headers=_auth(account.access_token)
            )
    finally:
        cut_off.stop()
    assert response.status_code == 503, response.text
    assert _code(response) == "SERVICE_UNAVAILABLE"


async def test_downloads_at_once_are_bounded_by_the_users_connection_slots(
    settings: Settings, urls: BackendUrls
) -> None:
    """Each download holds one of the user's connection slots (ws_connections_user) while
    it streams, and gives it back when done."""
    server = start_limited_server(settings, urls, {"ws_connections_user": "1"})
    try:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            api = GraphQLClient(http)
            account = await api.sign_up()
            data = f"tides {uuid.uuid4()}".encode()
            document_id = await _upload(http, account.access_token, "t.txt", data, "text/plain")
            url = f"/documents/{document_id}/file"
            ws = await connect(server, account.access_token)  # holds the one slot
            try:
                assert json.loads(await ws.recv())["type"] == "connection_ack"
                refused = await http.get(url, headers=_auth(account.access_token))
                assert refused.status_code == 429
                extensions = cast(JSON, _error(refused)["extensions"])
                assert extensions["code"] == "RATE_LIMITED"
                assert refused.headers["retry-after"] == str(extensions["retryAfter"])
            finally:
                await ws.close()
            await released(server, account.access_token)
            response = await http.get(url, headers=_auth(account.access_token))
            assert (response.status_code, response.content) == (200, data)
            # The download gave its slot back: a socket can take it again.
            await released(server, account.access_token)
    finally:
        server.stop()


async def test_downloads_spend_the_users_download_budget(
    settings: Settings, urls: BackendUrls
) -> None:
    """download_user counts every try per user, an unknown id too; past it a download is
    429 RATE_LIMITED with Retry-After, and other members still get their files."""
    server = start_limited_server(settings, urls, {"download_user": "2/3600"})
    try:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            api = GraphQLClient(http)
            owner = await api.sign_up()
            data = f"soundings {uuid.uuid4()}".encode()
            document_id = await _upload(http, owner.access_token, "s.txt", data, "text/plain")
            url = f"/documents/{document_id}/file"
            first = await http.get(url, headers=_auth(owner.access_token))
            assert (first.status_code, first.content) == (200, data)
            unknown = await http.get(
                f"/documents/{uuid.uuid4()}/file", headers=_auth(owner.access_token)
            )
            assert unknown.status_code == 404
            refused = await http.get(url, headers=_auth(owner.access_token))
            assert refused.status_code == 429, refused.text
            extensions = cast(JSON, _error(refused)["extensions"])
            assert extensions["code"] == "RATE_LIMITED"
            assert refused.headers["retry-after"] == str(extensions["retryAfter"])
            # Another member, and an API key (a budget of its own, as for every
            # per-user budget), still get the file.
            colleague = await api.sign_up()
            await api.add_member(owner, colleague.email, "VIEWER")
            viewer = await api.log_in(colleague.email, owner.organization_id)
            key, _ = await create_key(api, owner, role="VIEWER", name="mirror")
            for token in (viewer.access_token, key):
                other = await http.get(url, headers=_auth(token))
                assert (other.status_code, other.content) == (200, data)
    finally:
        server.stop()


async def test_a_cross_origin_client_can_read_the_filename(
    settings: Settings, urls: BackendUrls, http: httpx.AsyncClient, api: GraphQLClient
) -> None:
    account = await api.sign_up()
    document_id = await _upload(http, account.access_token, "c.txt", b"cross words", "text/plain")
    allowed = "https://app.example.com"
    cross = ServerThread(settings.model_copy(update={"cors_allow_origins": [allowed]}), urls)
    cross.start()
    try:
        async with httpx.AsyncClient(base_url=cross.base_url, timeout=30) as client:
            response = await client.get(
                f"/documents/{document_id}/file",
                headers={**_auth(account.access_token), "origin": allowed},
            )
    finally:
        cross.stop()
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == allowed
    assert response.headers["access-control-expose-headers"].lower() == "content-disposition"


def _open_descriptors(name: str) -> int:
    """This process's open files whose path holds ``name`` (the test server runs here)."""
    count = 0
    for descriptor in Path("/proc/self/fd").iterdir():
        try:
            count += name in os.readlink(descriptor)
        except OSError:  # closed meanwhile
            continue
    return count


async def test_a_client_leaving_mid_download_frees_the_file_and_the_slot(
    settings: Settings,
    urls: BackendUrls,
    http: httpx.AsyncClient,
    api: GraphQLClient,
    worker: WorkerProcess,
) -> None:
    account = await api.sign_up()
    data = f"tides {uuid.uuid4()}".encode()
    document_id = await _upload(http, account.access_token, "t.txt", data, "text/plain")
    await wait_for_document(api, account.access_token, document_id)
    # The worker is done with it: the stored file grows (sparse, no disk used) far past
    # what socket buffers hold, so the server is still sending when the client leaves.
    blob = settings.storage_dir / "blobs" / account.organization_id / document_id
    os.truncate(blob, 200_000_000)
    server = start_limited_server(settings, urls, {"ws_connections_user": "1"})
    try:
        url = f"{server.base_url}/documents/{document_id}/file"
        async with (
            httpx.AsyncClient(timeout=30) as leaving,
            leaving.stream("GET", url, headers=_auth(account.access_token)) as response,
        ):
            assert response.headers["content-length"] == "200000000"
            chunks = response.aiter_raw()
            assert (await chunks.__anext__()).startswith(data)
            assert _open_descriptors(document_id) == 1
        for _ in range(200):
            if _open_descriptors(document_id) == 0:
                break
            await asyncio.sleep(0.05)
        assert _open_descriptors(document_id) == 0
        await released(server, account.access_token)
    finally:
        server.stop()
    assert (await api.data(DELETE, {"id": document_id}, account.access_token))["deleteDocument"]


def test_content_disposition_never_breaks_the_header() -> None:
    assert content_disposition("report.pdf") == 'attachment; filename="report.pdf"'
    hostile = 'a"b\\c%20\r\nSet-Cookie: x=1;.txt'
    value = content_disposition(hostile)
    assert "\r" not in value and "\n" not in value
    fallback = value.split('filename="', 1)[1].split('"', 1)[0]
    assert fallback == "a_b_c_20Set-Cookie: x=1;.txt"
    assert value.endswith("filename*=UTF-8''a%22b%5Cc%2520Set-Cookie%3A%20x%3D1%3B.txt")
    assert content_disposition("日本語.pdf") == (
        "attachment; filename=\"___.pdf\"; filename*=UTF-8''%E6%97%A5%E6%9C%AC%E8%AA%9E.pdf"
    )
    assert content_disposition("\r\n") == 'attachment; filename="download"'


async def test_the_file_is_read_in_chunks(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    data = os.urandom(3 * CHUNK_BYTES + 17)
    path.write_bytes(data)
    descriptor = os.open(path, os.O_RDONLY)
    try:
        chunks = [chunk async for chunk in read_chunks(OpenedFile(descriptor, len(data)))]
    finally:
        os.close(descriptor)
    assert [len(chunk) for chunk in chunks] == [CHUNK_BYTES] * 3 + [17]
    assert b"".join(chunks) == data
