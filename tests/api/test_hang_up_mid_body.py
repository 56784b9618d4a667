"""A client that hangs up while sending its request body is counted as a hang-up (499),
not as a server error (500 and a traceback)."""

from __future__ import annotations

import asyncio

import pytest

from infrastructure.observability.metrics import HTTP_REQUESTS
from tests.conftest import ServerThread
from tests.helpers import GraphQLClient


def _count(status: str) -> float:
    return float(HTTP_REQUESTS.labels("POST", "/graphql", status)._value.get())


# The first bytes of a well-formed body of each kind: a parser given them asks for more
# (bytes it could already refuse would make the request a 400 before the hang-up).
_STARTS = {
    "application/json": b'{"query": "{ __typ',
    "multipart/form-data; boundary=----cut": (
        b'------cut\r\nContent-Disposition: form-data; name="operations"\r\n\r\n{"que'
    ),
}


async def _send_part_then_hang_up(server: ServerThread, content_type: str, token: str) -> None:
    """Announces a body of 1,000 bytes, sends the start of one, then closes the connection."""
    _, writer = await asyncio.open_connection("127.0.0.1", server.port)
    head = (
        "POST /graphql HTTP/1.1\r\n"
        "Host: 127.0.0.1\r\n"
        f"Content-Type: {content_type}\r\n"
        "Apollo-Require-Preflight: true\r\n"
        f"Authorization: Bearer {token}\r\n"  # uploads are parsed for editors only
        "Content-Length: 1000\r\n\r\n"
    )
    writer.write(head.encode() + _STARTS[content_type])
    await writer.drain()
    writer.close()
    await writer.wait_closed()


@pytest.mark.parametrize(
    "content_type", ["application/json", "multipart/form-data; boundary=----cut"]
)
async def test_a_client_hanging_up_mid_body_is_counted_as_499(
    server: ServerThread,
    api: GraphQLClient,
    content_type: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = (await api.sign_up()).access_token
    hung_up, failed = _count("499"), _count("500")
    await _send_part_then_hang_up(server, content_type, token)
    for _ in range(1_000):  # the server notices the hang-up in its own time
        if _count("499") > hung_up or _count("500") > failed:
            break
        await asyncio.sleep(0.02)
    assert (_count("499"), _count("500")) == (hung_up + 1, failed)
    crashes = [record for record in caplog.records if record.levelname == "ERROR"]
    assert not crashes, crashes[0].getMessage()
