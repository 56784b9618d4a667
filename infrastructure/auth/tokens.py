"""HS256 JWT access tokens (pyjwt) with every claim checked on the way in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import jwt

from domain.entities import IssuedAccessToken, Principal, Role
from domain.errors import TokenExpired, Unauthenticated
from domain.ports import Clock

ALGORITHM = "HS256"
REQUIRED_CLAIMS = [
    "exp", "iat", "nbf", "iss", "aud", "sub", "org", "role", "jti", "sid", "iat_ms",
]  # fmt: skip
MAX_TOKEN_LENGTH = 4_096


class JwtAccessTokenCodec:
    def __init__(
        self, secret: str, issuer: str, audience: str, ttl: timedelta, clock: Clock
    ) -> None:
        self._secret = secret
        self._issuer = issuer
        self._audience = audience
        self._ttl = ttl
        self._clock = clock

    def issue(self, principal: Principal) -> IssuedAccessToken:
        now = self._clock.now()
        claims = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": str(principal.user_id),
            "org": str(principal.organization_id),
            "role": principal.role.value,
            "sid": str(principal.session_id),
            "jti": uuid4().hex,
            "iat": int(now.timestamp()),
            # Millisecond issue time: revocations compare against it (iat is whole seconds).
            "iat_ms": int(now.timestamp() * 1000),
            "nbf": int(now.timestamp()),
            "exp": int((now + self._ttl).timestamp()),
        }
        token = jwt.encode(claims, self._secret, algorithm=ALGORITHM)
        return IssuedAccessToken(token=token, expires_in=int(self._ttl.total_seconds()))

    def decode(self, token: str) -> tuple[Principal, datetime]:
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise Unauthenticated("The access token is malformed.")
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                leeway=5,
                options={"require": REQUIRED_CLAIMS},
            )
            principal = Principal(
                user_id=UUID(claims["sub"]),
                organization_id=UUID(claims["org"]),
                role=Role(claims["role"]),
                session_id=UUID(claims["sid"]),
            )
            issued_at = datetime.fromtimestamp(int(claims["iat_ms"]) / 1000, UTC)
        except jwt.ExpiredSignatureError as exc:
            raise TokenExpired() from exc
        except (jwt.InvalidTokenError, ValueError, TypeError, KeyError) as exc:
            raise Unauthenticated("The access token is invalid.") from exc
        return principal, issued_at
