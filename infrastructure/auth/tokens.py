"""HS256 JWT access tokens (pyjwt) with every claim checked on the way in.

Every request presents its access token again, and verifying one (signature, claims,
UUIDs) costs about 40 µs of the API's event loop. A token whose verification passed is
remembered (the exact token text, a bounded number of them, least recently used
dropped first), so its next uses only check the time-bound claims against the clock,
as pyjwt would with the same leeway. Revocation is not part of this: the session is
still checked on every request (``session_revocations.py``).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
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
LEEWAY_SECONDS = 5
# Verified tokens remembered per process (about 1 kB each).
REMEMBERED_TOKENS = 4_096


@dataclass(frozen=True, slots=True)
class _Verified:
    principal: Principal
    issued_at: datetime
    # The time-bound claims, in seconds since the epoch.
    iat: float
    nbf: float
    exp: float


class JwtAccessTokenCodec:
    def __init__(
        self,
        secret: str,
        issuer: str,
        audience: str,
        ttl: timedelta,
        clock: Clock,
        *,
        wall_clock: Callable[[], float] = time.time,
        remembered: int = REMEMBERED_TOKENS,
    ) -> None:
        self._secret = secret
        self._issuer = issuer
        self._audience = audience
        self._ttl = ttl
        self._clock = clock
        # What pyjwt compares the claims with: the system's wall clock.
        self._wall_clock = wall_clock
        self._remembered = remembered
        self._verified: OrderedDict[str, _Verified] = OrderedDict()

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
        known = self._verified.get(token)
        if known is None:
            known = self._verify(token)
            self._verified[token] = known
            if len(self._verified) > self._remembered:
                self._verified.popitem(last=False)
        else:
            self._verified.move_to_end(token)
        # pyjwt's own checks of the time-bound claims, with the same leeway.
        now = self._wall_clock()
        if known.exp <= now - LEEWAY_SECONDS:
            del self._verified[token]
            raise TokenExpired()
        if known.nbf > now + LEEWAY_SECONDS or known.iat > now + LEEWAY_SECONDS:
            raise Unauthenticated("The access token is invalid.")
        return known.principal, known.issued_at

    def _verify(self, token: str) -> _Verified:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": REQUIRED_CLAIMS},
            )
            principal = Principal(
                user_id=UUID(claims["sub"]),
                organization_id=UUID(claims["org"]),
                role=Role(claims["role"]),
                session_id=UUID(claims["sid"]),
            )
            issued_at = datetime.fromtimestamp(int(claims["iat_ms"]) / 1000, UTC)
            return _Verified(
                principal,
                issued_at,
                float(claims["iat"]),
                float(claims["nbf"]),
                float(claims["exp"]),
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenExpired() from exc
        except (jwt.InvalidTokenError, ValueError, TypeError, KeyError) as exc:
            raise Unauthenticated("The access token is invalid.") from exc
