"""Resolve where PostgreSQL and Redis are: configured URLs, or embedded servers we start."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import structlog

from infrastructure.container import BackendUrls
from infrastructure.database.migrate import upgrade_to_head
from infrastructure.embedded import EmbeddedPostgres, EmbeddedRedis
from infrastructure.settings import Settings

log = structlog.get_logger("foundry.runtime")


@dataclass
class Backends:
    """The backends of one process; stop() stops whatever it started."""

    settings: Settings
    postgres: EmbeddedPostgres | None = field(default=None, init=False)
    redis: EmbeddedRedis | None = field(default=None, init=False)

    def start(self) -> BackendUrls:
        settings = self.settings
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

    def stop(self) -> None:
        if self.redis is not None:
            self.redis.stop()
        if self.postgres is not None:
            self.postgres.stop()


def migrate(settings: Settings, urls: BackendUrls) -> None:
    upgrade_to_head(urls.database_url, settings.database_app_role)
    log.info("migrations.applied")
