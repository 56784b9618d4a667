"""Forged, tampered and expired access tokens are refused with their codes."""

from __future__ import annotations

import base64
import json
import time
import uuid

import jwt

from tests.conftest import TEST_JWT_SECRET
from tests.helpers import ME, GraphQLClient


def _claims(**overrides: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": "knowledge-foundry",
        "aud": "knowledge-foundry-api",
        "sub": str(uuid.uuid4()),
        "org": str(uuid.uuid4()),
        "role": "admin",
        "sid": str(uuid.uuid4()),
        "jti": uuid.uuid4().hex,
        "iat": now,
        "iat_ms": now * 1000,
        "nbf": now,
        "exp": now + 600,
    }
    claims.update(overrides)
    return claims


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def test_alg_none_is_refused(api: GraphQLClient) -> None:
    account = await api.sign_up()
    claims = jwt.decode(account.access_token, options={"verify_signature": False})
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
    assert await api.error_code(ME, token=unsigned) == "UNAUTHENTICATED"


async def test_wrong_key_wrong_audience_wrong_issuer(api: GraphQLClient) -> None:
    account = await api.sign_up()
    real = jwt.decode(account.access_token, options={"verify_signature": False})
    forged = [
        jwt.encode(real, "another-secret-that-is-long-enough-0123456789", algorithm="HS256"),
        jwt.encode({**real, "aud": "someone-else"}, TEST_JWT_SECRET, algorithm="HS256"),
        jwt.encode({**real, "iss": "evil"}, TEST_JWT_SECRET, algorithm="HS256"),
        jwt.encode({**real, "role": "superuser"}, TEST_JWT_SECRET, algorithm="HS256"),
        jwt.encode({**real, "nbf": int(time.time()) + 3_600}, TEST_JWT_SECRET, algorithm="HS256"),
        jwt.encode(
            {k: v for k, v in real.items() if k != "sid"}, TEST_JWT_SECRET, algorithm="HS256"
        ),
        jwt.encode(real, TEST_JWT_SECRET, algorithm="HS512"),
    ]
    for token in forged:
        assert await api.error_code(ME, token=token) == "UNAUTHENTICATED", (
            jwt.get_unverified_header(token)
        )


async def test_tampered_payload_is_refused(api: GraphQLClient) -> None:
    account = await api.sign_up()
    header, _, signature = account.access_token.split(".")
    payload = _b64(_claims(sub=account.user_id, org=str(uuid.uuid4())))
    assert await api.error_code(ME, token=f"{header}.{payload}.{signature}") == "UNAUTHENTICATED"


async def test_expired_token_says_so(api: GraphQLClient) -> None:
    past = int(time.time()) - 3_600
    expired = jwt.encode(
        _claims(iat=past, nbf=past, exp=past + 60), TEST_JWT_SECRET, algorithm="HS256"
    )
    assert await api.error_code(ME, token=expired) == "TOKEN_EXPIRED"


async def test_garbage_tokens(api: GraphQLClient) -> None:
    for token in ("garbage", "a.b.c", "x" * 10_000):
        assert await api.error_code(ME, token=token) == "UNAUTHENTICATED"
