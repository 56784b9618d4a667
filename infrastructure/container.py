"""The composition root: builds engines, clients and services from settings, once per process."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol, runtime_checkable

from dramatiq.brokers.redis import RedisBroker
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.ingestion.chunking import ChunkingOptions
from domain.ingestion.ports import Embedder
from domain.ports import RateLimiter
from domain.services import Services
from domain.services.accounts import AccountService
from domain.services.answers import AnswerOptions, AnswerService
from domain.services.api_keys import ApiKeyOptions, ApiKeyService
from domain.services.audit import AuditService
from domain.services.chats import ChatService
from domain.services.documents import DocumentService, UploadLimits
from domain.services.ingestion import IngestionOptions, IngestionService
from domain.services.organizations import OrganizationService
from domain.services.passwords import PasswordService
from domain.services.search import SearchOptions, SearchService
from infrastructure.answers.factory import build_answerers
from infrastructure.auth.jwt_secret import resolve_jwt_secret
from infrastructure.auth.passwords import Argon2PasswordHasher
from infrastructure.auth.tokens import JwtAccessTokenCodec
from infrastructure.cache.answer_cache import RedisAnswerCache
from infrastructure.cache.document_events import RedisEventBus
from infrastructure.cache.eviction_policy import EvictionCheck
from infrastructure.cache.pubsub_listener import RedisListener
from infrastructure.cache.redis_client import create_redis
from infrastructure.cache.session_revocations import RedisSessionRevocations
from infrastructure.clock import SystemClock
from infrastructure.database.embedding_column import column_dimensions
from infrastructure.database.engine import (
    connect_arguments,
    create_engine,
    create_session_factory,
    schema_readiness,
)
from infrastructure.database.reader import ReaderPool, connect_target
from infrastructure.database.uow import SqlUnitOfWorkFactory, UnitOfWorkOptions
from infrastructure.embeddings.batching import BatchingEmbedder
from infrastructure.embeddings.factory import build_embedder
from infrastructure.observability.answer_metrics import (
    PrometheusAnswerObserver,
    PrometheusRetrievalObserver,
)
from infrastructure.observability.ingestion_metrics import PrometheusStageObserver
from infrastructure.parsing.limits import ParseLimits
from infrastructure.parsing.sandbox import SandboxedParser
from infrastructure.queue.broker import create_broker
from infrastructure.queue.jobs import DramatiqJobQueue
from infrastructure.ratelimit.limiter import RedisRateLimiter, UnlimitedRateLimiter
from infrastructure.ratelimit.policy import parse_policies
from infrastructure.settings import Settings
from infrastructure.storage.local_blobs import LocalBlobStore

READINESS_TIMEOUT_SECONDS = 2.0


@runtime_checkable
class _AsyncClosable(Protocol):
    """What holds connections of its own (the Gemini clients' HTTP pools)."""

    async def aclose(self) -> None: ...


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
        self._eviction = EvictionCheck(self.redis)
        self.broker: RedisBroker = create_broker(urls.redis_url, settings.redis_key_prefix)
        self.session_factory = create_session_factory(self.engine)
        options = UnitOfWorkOptions(
            app_role=settings.database_app_role,
            hnsw_ef_search=settings.hnsw_ef_search,
            fulltext_max_ranked=settings.search_fulltext_max_ranked,
        )
        self.readers = ReaderPool(
            {
                **connect_target(self.engine),
                **connect_arguments(settings.database_statement_timeout_ms),
            },
            settings.database_pool_size,
            app_role=options.app_role,
            hnsw_ef_search=options.hnsw_ef_search,
            fulltext_max_ranked=options.fulltext_max_ranked,
        )
        self.uow_factory = uow_factory = SqlUnitOfWorkFactory(
            self.session_factory, options, self.readers
        )
        self.blobs = LocalBlobStore(settings.storage_dir)
        self.queue = DramatiqJobQueue(self.broker)
        # One pub/sub connection for document events and session notices.
        self.listener = RedisListener(self.redis)
        self.events = RedisEventBus(self.redis, settings.redis_key_prefix, self.listener)
        self.rate_limiter: RateLimiter = (
            RedisRateLimiter(
                self.redis, settings.redis_key_prefix, parse_policies(settings.rate_limits)
            )
            if settings.rate_limits_enabled
            else UnlimitedRateLimiter()
        )
        # Also the session notices an authenticated WebSocket watches (socket_sessions).
        self.revocations = revocations = RedisSessionRevocations(
            self.redis,
            settings.redis_key_prefix,
            settings.access_token_ttl_seconds,
            self.clock,
            self.listener,
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
        # The query embedder: built here, loaded on first use (or by warm_up()). Questions
        # and answer sentences go to it directly: the local model gathers concurrent ones
        # into batches on a thread of its own; Gemini takes them as concurrent calls, each
        # within its short deadline, so one slow call never makes the others wait in line.
        embedder = build_embedder(settings)
        self._batching = BatchingEmbedder(embedder, coalesce_queries=False)
        self._parsers: list[SandboxedParser] = []
        self._batchers: list[BatchingEmbedder] = []  # build_ingestion's, around its caller's
        self.embedder: Embedder = self._batching
        search = SearchService(
            uow_factory=uow_factory,
            embedder=self.embedder,
            observer=PrometheusRetrievalObserver(),
            options=SearchOptions(
                max_limit=settings.search_max_limit,
                candidates=settings.search_candidates,
                max_query_chars=settings.question_max_chars,
            ),
        )
        generator, fallback = build_answerers(settings, self.embedder)
        # The providers' clients this container opened (Gemini's), closed with it.
        self._clients: list[_AsyncClosable] = []
        for built in (embedder, generator, fallback):
            if isinstance(built, _AsyncClosable):
                self._clients.append(built)
        self.services = Services(
            accounts=AccountService(
                uow_factory=uow_factory,
                hasher=hasher,
                tokens=tokens,
                revocations=revocations,
                clock=self.clock,
                refresh_token_ttl=timedelta(seconds=settings.refresh_token_ttl_seconds),
                session_max_age=timedelta(seconds=settings.session_max_age_seconds),
                signup_open=settings.signup == "open",
            ),
            passwords=PasswordService(
                uow_factory=uow_factory,
                hasher=hasher,
                revocations=revocations,
                clock=self.clock,
                access_token_ttl=timedelta(seconds=settings.access_token_ttl_seconds),
            ),
            organizations=OrganizationService(
                uow_factory,
                revocations,
                self.clock,
                access_token_ttl=timedelta(seconds=settings.access_token_ttl_seconds),
            ),
            documents=DocumentService(
                uow_factory=uow_factory,
                blobs=self.blobs,
                queue=self.queue,
                events=self.events,
                clock=self.clock,
                limits=UploadLimits(
                    max_file_bytes=settings.upload_max_file_bytes,
                    max_files=settings.upload_max_files,
                    max_organization_bytes=settings.org_storage_max_bytes,
                    max_organization_documents=settings.org_documents_max,
                ),
            ),
            search=search,
            chats=ChatService(uow_factory, self.clock),
            answers=AnswerService(
                uow_factory=uow_factory,
                search=search,
                generator=generator,
                fallback=fallback,
                observer=PrometheusAnswerObserver(),
                clock=self.clock,
                cache=self._answer_cache(settings),
                options=AnswerOptions(
                    max_question_chars=settings.question_max_chars,
                    max_sources=settings.answer_max_sources,
                    min_similarity=settings.answer_min_similarity,
                    history_messages=settings.answer_history_messages,
                ),
            ),
            api_keys=ApiKeyService(
                uow_factory,
                self.clock,
                ApiKeyOptions(
                    max_active_per_organization=settings.api_keys_max_per_organization,
                    last_used_interval=timedelta(
                        seconds=settings.api_key_last_used_interval_seconds
                    ),
                ),
                revocations,
            ),
            audit=AuditService(uow_factory),
        )

    def _answer_cache(self, settings: Settings) -> RedisAnswerCache | None:
        if not settings.answer_cache_enabled:
            return None
        return RedisAnswerCache(
            self.redis,
            settings.redis_key_prefix,
            ttl_seconds=settings.answer_cache_ttl_seconds,
            min_similarity=settings.answer_cache_similarity,
            max_entries=settings.answer_cache_max_entries,
            copy_bytes=settings.answer_cache_copy_mb * 1024 * 1024,
        )

    def build_ingestion(self, embedder: Embedder | None = None) -> IngestionService:
        """The worker's pipeline, on the process's embedder unless another is given."""
        settings = self.settings
        parser = SandboxedParser(
            ParseLimits(
                max_pdf_pages=settings.pdf_max_pages, max_chars=settings.document_max_chars
            ),
            timeout_seconds=settings.parse_timeout_seconds,
            memory_bytes=settings.parse_memory_mb * 1024 * 1024,
        )
        self._parsers.append(parser)  # its parse server stops with the container
        if embedder is None:
            embedder = self.embedder
        else:  # its batching tasks stop with the container; the embedder stays the caller's
            embedder = BatchingEmbedder(embedder)
            self._batchers.append(embedder)
        return IngestionService(
            uow_factory=self.uow_factory,
            blobs=self.blobs,
            parser=parser,
            embedder=embedder,
            events=self.events,
            queue=self.queue,
            clock=self.clock,
            observer=PrometheusStageObserver(),
            options=IngestionOptions(
                chunking=ChunkingOptions(settings.chunk_size_tokens, settings.chunk_overlap_tokens),
                embed_group_size=settings.embed_group_size,
                max_attempts=settings.ingest_max_attempts,
                processing_timeout=timedelta(seconds=settings.ingest_processing_timeout_seconds),
                pending_timeout=timedelta(seconds=settings.ingest_pending_timeout_seconds),
                heartbeat_interval=timedelta(seconds=settings.ingest_heartbeat_seconds),
                heartbeat_timeout=timedelta(seconds=settings.ingest_heartbeat_timeout_seconds),
            ),
        )

    async def queue_depth(self) -> int:
        """Ingestion jobs waiting, in every lane (not those delayed for a retry)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in self.queue.lane_keys():
                pipe.llen(key)
            return sum(int(length) for length in await pipe.execute())

    async def readiness(self) -> dict[str, str]:
        """'ok' or a short reason per dependency; never raises."""
        checks = {"database": self._check_database(), "redis": self._check_redis()}
        results = await asyncio.gather(*checks.values())
        return dict(zip(checks, results, strict=True))

    async def _check_database(self) -> str:
        try:
            async with asyncio.timeout(READINESS_TIMEOUT_SECONDS):
                schema = await schema_readiness(self.engine)
                if schema != "ok":
                    return schema
                # Another embedder's column (`foundry reembed` run with other settings)
                # would fail every search and answer of this process: not ready.
                stored = await column_dimensions(self.engine)
        except Exception as exc:
            return f"unreachable: {type(exc).__name__}"
        configured = self.settings.embedding_dimensions
        if stored != configured:
            return (
                f"chunks.embedding holds vector({stored}) but this embedder gives "
                f"{configured} dimensions (run foundry reembed, or fix FOUNDRY_EMBEDDING_*)"
            )
        return "ok"

    async def _check_redis(self) -> str:
        try:
            async with asyncio.timeout(READINESS_TIMEOUT_SECONDS):
                await self.redis.ping()
                problem = await self._eviction.problem()
        except Exception as exc:
            return f"unreachable: {type(exc).__name__}"
        return problem or "ok"

    async def aclose(self) -> None:
        for parser in self._parsers:
            await asyncio.to_thread(parser.close)
        for batching in (self._batching, *self._batchers):
            await batching.aclose()
        for client in self._clients:  # after the batchers: nothing calls them any more
            await client.aclose()
        await self.listener.aclose()
        self.broker.close()
        # Dramatiq's broker leaves its Redis connections open; close them with the rest.
        self.broker.client.connection_pool.disconnect()
        await self.redis.aclose()
        await self.readers.aclose()
        await self.engine.dispose()
