"""The composition root: builds engines, clients and services from settings, once per process."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.services import Services
from domain.services.accounts import AccountService
from domain.services.organizations import OrganizationService
from infrastructure.auth.jwt_secret import resolve_jwt_secret
from infrastructure.auth.passwords import Argon2PasswordHasher
from infrastructure.auth.tokens import JwtAccessTokenCodec
from infrastructure.cache.redis_client import create_redis
from infrastructure.cache.session_revocations import RedisSessionRevocations
from infrastructure.clock import SystemClock
from infrastructure.database.engine import create_engine, create_session_factory, migrations_at_head
from infrastructure.database.uow import SqlUnitOfWorkFactory
from infrastructure.settings import Settings

READINESS_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class BackendUrls:
    """Where PostgreSQL and Redis are, once embedded servers (if any) have started."""

    database_url: str
    redis_url: str


class Container:
    def __init__(self, settings: Settings, urls: BackendUrls) -> None:
        self.settings = settings
        self.clock = SystemClock()
        self.engine: AsyncEngine = create_engine(
            urls.database_url, settings.database_pool_size, settings.database_statement_timeout_ms
        )
        self.redis: Redis = create_redis(urls.redis_url)
        uow_factory = SqlUnitOfWorkFactory(
            create_session_factory(self.engine), settings.database_app_role
        )
        revocations = RedisSessionRevocations(
            self.redis, settings.redis_key_prefix, settings.access_token_ttl_seconds, self.clock
        )
        tokens = JwtAccessTokenCodec(
            secret=resolve_jwt_secret(settings),
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            ttl=timedelta(seconds=settings.access_token_ttl_seconds),
            clock=self.clock,
        )
        hasher = Argon2PasswordHasher(
            settings.argon2_time_cost, settings.argon2_memory_cost_kib, settings.argon2_parallelism
        )
        self.services = Services(
            accounts=AccountService(
                uow_factory=uow_factory,
                hasher=hasher,
                tokens=tokens,
                revocations=revocations,
                clock=self.clock,
                refresh_token_ttl=timedelta(seconds=settings.refresh_token_ttl_seconds),
            ),
            organizations=OrganizationService(uow_factory, revocations, self.clock),
        )

    async def readiness(self) -> dict[str, str]:
        """'ok' or a short reason per dependency; never raises."""
        checks = {"database": self._check_database(), "redis": self._check_redis()}
        results = await asyncio.gather(*checks.values())
        return dict(zip(checks, results, strict=True))

    async def _check_database(self) -> str:
        try:
            async with asyncio.timeout(READINESS_TIMEOUT_SECONDS):
                async with self.engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
                if not await migrations_at_head(self.engine):
                    return "migrations not at head"
        except Exception as exc:
            return f"unreachable: {type(exc).__name__}"
        return "ok"

    async def _check_redis(self) -> str:
        try:
            async with asyncio.timeout(READINESS_TIMEOUT_SECONDS):
                await self.redis.ping()
        except Exception as exc:
            return f"unreachable: {type(exc).__name__}"
        return "ok"

    async def aclose(self) -> None:
        await self.redis.aclose()
        await self.engine.dispose()
