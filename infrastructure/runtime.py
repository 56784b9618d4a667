"""Resolve where PostgreSQL and Redis are: configured URLs, or embedded servers we start."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import structlog

from infrastructure.cli_errors import CommandFailed
from infrastructure.container import BackendUrls
from infrastructure.database.engine import create_engine
from infrastructure.database.migrate import upgrade_to_head
from infrastructure.database.pgvector_version import migration_version, version_problem
from infrastructure.embedded import EmbeddedPostgres, EmbeddedRedis, ensure_state_dir
from infrastructure.embedded_keeper import Keeper
from infrastructure.settings import Settings

log = structlog.get_logger("foundry.runtime")


# How long a keeper waits, after its process died, for the processes it was told to
# outlive (`up`'s worker, which has the shutdown grace period to stop) beyond the grace.
KEEPER_MARGIN_SECONDS = 15.0


@dataclass
class Backends:
    """The backends of one process; stop() stops whatever it started. Embedded servers
    get a keeper first (``embedded_keeper.py``): should this process be killed outright,
    the keeper stops them in its place."""

    settings: Settings
    postgres: EmbeddedPostgres | None = field(default=None, init=False)
    redis: EmbeddedRedis | None = field(default=None, init=False)
    keeper: Keeper | None = field(default=None, init=False)

    def start(self) -> BackendUrls:
        settings = self.settings
        embedded_postgres = settings.database_url is None
        embedded_redis = settings.redis_url is None
        if embedded_postgres or embedded_redis:
            self.keeper = Keeper.spawn(
                ensure_state_dir(settings.state_dir),
                settings.database_name,
                postgres=embedded_postgres,
                redis=embedded_redis,
                wait_seconds=settings.shutdown_grace_seconds + KEEPER_MARGIN_SECONDS,
            )
        if settings.database_url is not None:
            database_url = settings.database_url.get_secret_value()
        else:
            self.postgres = EmbeddedPostgres(
                settings.state_dir,
                settings.database_name,
                shared_buffers_mb=settings.embedded_postgres_shared_buffers_mb,
                batch_scheduling=settings.embedded_postgres_batch_scheduling,
            )
            self.postgres.start()
            asyncio.run(self.postgres.ensure_database())
            database_url = self.postgres.sqlalchemy_url()
        if settings.redis_url is not None:
            redis_url = settings.redis_url.get_secret_value()
        else:
            self.redis = EmbeddedRedis(settings.state_dir)
            self.redis.start()
            redis_url = self.redis.url()
        return BackendUrls(database_url=database_url, redis_url=redis_url)

    def outlive(self, pid: int) -> None:
        """Should this process be killed outright, its embedded servers stop only once
        ``pid`` (a child using them) has exited too."""
        if self.keeper is not None:
            self.keeper.outlive(pid)

    def stop(self) -> None:
        if self.redis is not None:
            self.redis.stop()
        if self.postgres is not None:
            self.postgres.stop()
        if self.keeper is not None:
            self.keeper.release()
            self.keeper = None


def migrate(settings: Settings, urls: BackendUrls) -> None:
    """Apply the migrations, after refusing a pgvector this code cannot run on (in one
    line, as every refusal of `foundry migrate`)."""
    problem = version_problem(asyncio.run(_pgvector_version(settings, urls)))
    if problem is not None:
        raise CommandFailed(f"Cannot migrate the database: {problem}.")
    upgrade_to_head(urls.database_url, settings.database_app_role)
    log.info("migrations.applied")


async def _pgvector_version(settings: Settings, urls: BackendUrls) -> str | None:
    engine = create_engine(urls.database_url, 1, settings.database_statement_timeout_ms)
    try:
        async with engine.connect() as conn:
            return await migration_version(conn)
    finally:
        await engine.dispose()
