"""All configuration, read from ``FOUNDRY_*`` environment variables and ``.env``."""

from __future__ import annotations

import ipaddress
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

Environment = Literal["development", "test", "production"]


DATABASE_SCHEMES = frozenset({"postgres", "postgresql", "postgresql+asyncpg"})
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")

# The ingest actor's time limit (workers/actors.py): Dramatiq interrupts a document's
# ingestion after it, and the watchdog must wait longer (ingest_processing_timeout_seconds).
INGEST_TIME_LIMIT_SECONDS = 30 * 60


def trusted_proxy_entries(value: str) -> list[str]:
    """FOUNDRY_FORWARDED_ALLOW_IPS as uvicorn must be given it: addresses and networks
    in canonical form, or ValueError naming the entry that is neither.

    uvicorn reads each entry with a strict ``ip_network``: a network written with host
    bits (``172.18.0.1/16``) would silently become a name that matches no peer, so it is
    stored as its network (``172.18.0.0/16``). ``*`` is refused: for it uvicorn takes
    the leftmost X-Forwarded-For entry, which the client wrote itself, so any client
    could choose its own address for rate limits and the audit log.
    """
    entries: list[str] = []
    for entry in (part.strip() for part in value.split(",")):
        if not entry:
            continue
        if entry == "*":
            raise ValueError(
                "'*' would let any client choose its own address (rate limits, audit "
                "log) by writing X-Forwarded-For; list the proxies' addresses or "
                "networks instead, e.g. 10.0.0.0/8,192.168.1.5"
            )
        if "/" in entry:
            entries.append(str(ipaddress.ip_network(entry, strict=False)))
        else:
            entries.append(str(ipaddress.ip_address(entry)))  # ValueError names the entry
    return entries


class Settings(BaseSettings):
    """One settings object, built once by the composition root and passed down."""

    # A blank FOUNDRY_* value (empty or only whitespace), in the environment or in .env,
    # means the setting's default: docker-compose's ${VAR} of an unset variable, or
    # .env.example's ``FOUNDRY_JWT_SECRET=`` uncommented. Empty values are dropped by
    # env_ignore_empty, whitespace-only ones by settings_customise_sources.
    model_config = SettingsConfigDict(
        env_prefix="FOUNDRY_",
        env_file=".env",
        env_file_encoding="utf-8",
        env_ignore_empty=True,
        extra="ignore",
    )

    environment: Environment = "development"
    debug: bool = False
    state_dir: Path = Path(".foundry")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # Reverse proxies (IPs or CIDR networks, comma-separated) whose X-Forwarded-For and
    # X-Forwarded-Proto are believed: the client address (rate limits, audit log) is then
    # the nearest address in the chain that is not one of them. Empty: none. Stored
    # normalised (see trusted_proxy_entries).
    forwarded_allow_ips: str = ""
    # permessage-deflate on WebSockets: off by default (as in Node's `ws`). Each
    # compressed connection keeps zlib state for its lifetime, two thirds of an idle
    # subscription's memory (182 KB with, 59 KB without; bench/README.md), while
    # answers and document events are small messages that gain little.
    ws_per_message_deflate: bool = False

    # Storage. Without a URL the server runs embedded PostgreSQL / Redis under state_dir.
    database_url: SecretStr | None = None
    database_name: str = "foundry"
    # The embedded server's shared_buffers; None: a quarter of the memory (or of a
    # container's limit), 128 MB to 1 GB.
    embedded_postgres_shared_buffers_mb: int | None = Field(default=None, ge=16, le=1_048_576)
    # The embedded server's processes under SCHED_BATCH on Linux, so a backend woken
    # by a query does not preempt the API's event loop (infrastructure/embedded.py).
    embedded_postgres_batch_scheduling: bool = True
    database_app_role: str = Field(default="foundry_app", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    database_pool_size: int = Field(default=10, ge=1, le=200)
    database_statement_timeout_ms: int = Field(default=15_000, ge=100)
    redis_url: SecretStr | None = None
    # Plain characters only: document events are subscribed to by pattern
    # (PSUBSCRIBE "<prefix>documents:*"), where [ ] ? * and \ would be glob syntax.
    redis_key_prefix: str = Field(default="foundry:", pattern=r"^[A-Za-z0-9_:.\-]{0,100}$")

    # Authentication.
    jwt_secret: SecretStr | None = None
    jwt_issuer: str = "knowledge-foundry"
    jwt_audience: str = "knowledge-foundry-api"
    access_token_ttl_seconds: int = Field(default=900, ge=30, le=86_400)
    refresh_token_ttl_seconds: int = Field(default=30 * 86_400, ge=300)
    session_max_age_seconds: int = Field(default=90 * 86_400, ge=300)
    api_keys_max_per_organization: int = Field(default=50, ge=1, le=10_000)
    # last_used_at is written at most this often per key, not on every request.
    api_key_last_used_interval_seconds: int = Field(default=60, ge=1)
    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_memory_cost_kib: int = Field(default=65_536, ge=8)
    argon2_parallelism: int = Field(default=4, ge=1)
    # "closed": signUp answers SIGNUP_CLOSED and writes nothing; existing accounts still
    # log in, and admins still add them to their organisations (addMember).
    signup: Literal["open", "closed"] = "open"

    # HTTP and GraphQL.
    cors_allow_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    graphiql_enabled: bool = True
    graphql_max_depth: int = Field(default=12, ge=2)
    graphql_max_aliases: int = Field(default=20, ge=0)
    graphql_max_tokens: int = Field(default=2_000, ge=50)
    graphql_max_query_chars: int = Field(default=50_000, ge=1_000)
    graphql_max_body_bytes: int = Field(default=1_000_000, ge=1_024)
    upload_max_request_bytes: int = Field(default=200 * 1024 * 1024, ge=1_024)
    ws_connection_init_timeout_seconds: int = Field(default=10, ge=1)
    ws_max_subscriptions_per_connection: int = Field(default=20, ge=1)
    shutdown_grace_seconds: int = Field(default=20, ge=0)
    # Introspection and "Did you mean" suggestions (which leak the same schema): on
    # outside production, off in production unless set to true.
    graphql_introspection: bool | None = None

    # Rate limits, shared by all API processes through Redis. Keys are budgets
    # (login_ip, login_email, signup_ip, signup_email, session_ip, session_user,
    # upload_org, ask_user, search_user, reprocess_org, chats_user, members_user,
    # download_user: "count/seconds"; ws_connections_user, subscriptions_user: "count"),
    # optionally "budget:role" for a role's own limit. Unlisted budgets keep their
    # defaults.
    rate_limits_enabled: bool = True
    rate_limits: dict[str, str] = Field(default_factory=dict)

    # Ingestion.
    embedder: Literal["local", "gemini"] = "local"
    # At most 2,000: pgvector's HNSW index (migration 0001) takes no larger vector.
    embedding_dimensions: int = Field(default=384, ge=8, le=2_000)
    # The local embedder's runtime: ONNX Runtime on a one-time export of the bundled
    # weights (cached in model_cache_dir, default ~/.cache/knowledge-foundry/models), or
    # torch through sentence-transformers. Both give the same vectors.
    embedding_runtime: Literal["onnx", "torch"] = "onnx"
    # Questions (never stored) through an int8 copy of the ONNX model: about three times
    # cheaper, cosine ≥ 0.994 to the float vector; "float32" embeds them like documents.
    # The torch runtime always uses float.
    embedding_query_precision: Literal["int8", "float32"] = "int8"
    model_cache_dir: Path | None = None
    # Threads of the local embedder, whichever runtime.
    torch_threads: int = Field(default=2, ge=1, le=64)
    # Embedding threads in API processes, which embed short questions, many at once: one
    # thread each beats two that fight the database and the event loop for the cores.
    api_torch_threads: int = Field(default=1, ge=1, le=64)
    embed_batch_size: int = Field(default=32, ge=1, le=256)
    # Chunks of one document per embedding call: small enough that a huge document
    # does not starve small ones (calls from several documents share a model batch).
    embed_group_size: int = Field(default=128, ge=1, le=10_000)
    chunk_size_tokens: int = Field(default=240, ge=16, le=8_192)
    chunk_overlap_tokens: int = Field(default=32, ge=0)
    # At most what GraphQL's Int (Document.sizeBytes) can carry.
    upload_max_file_bytes: int = Field(default=50 * 1024 * 1024, ge=1, le=2**31 - 1)
    upload_max_files: int = Field(default=20, ge=1, le=1_000)
    # Per organisation, over its live (not deleted) documents: the bytes of their original
    # files, and their number; a file past either is refused (QUOTA_EXCEEDED). 0: no limit.
    org_storage_max_bytes: int = Field(default=0, ge=0)
    org_documents_max: int = Field(default=0, ge=0)
    pdf_max_pages: int = Field(default=2_000, ge=1)
    document_max_chars: int = Field(default=5_000_000, ge=1_000)
    # Each parse runs in a child process with these budgets (PARSE_TIMEOUT, and
    # DOCUMENT_TOO_LARGE when the memory runs out): one bad file cannot hold a worker.
    parse_timeout_seconds: float = Field(default=300, gt=0, le=1_500)
    parse_memory_mb: int = Field(default=2_048, ge=256, le=65_536)
    ingest_max_attempts: int = Field(default=3, ge=1, le=20)
    # Longer than the ingest actor's 30-minute time limit (INGEST_TIME_LIMIT_SECONDS), so
    # the watchdog never takes a document from a worker that is still allowed to be
    # working on it (checked below, outside the test environment).
    ingest_processing_timeout_seconds: int = Field(default=2_400, ge=1)
    ingest_pending_timeout_seconds: int = Field(default=300, ge=1)
    # A processing worker records a heartbeat this often; a document whose heartbeat
    # stopped for the timeout (its worker was killed outright) goes back to the queue.
    ingest_heartbeat_seconds: float = Field(default=15, gt=0)
    ingest_heartbeat_timeout_seconds: float = Field(default=120, gt=0)
    watchdog_interval_seconds: float = Field(default=30, gt=0)
    # Documents in flight per worker; their chunks share model batches (see BatchingEmbedder).
    worker_threads: int = Field(default=4, ge=1, le=64)
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)

    # Retrieval and answers.
    # Load the embedding model when the API starts rather than on the first search.
    preload_models: bool = True
    answerer: Literal["extractive", "gemini"] = "extractive"
    # At least the schema's default limit (8), which a client that sends none gets.
    search_max_limit: int = Field(default=50, ge=8, le=500)
    # Candidates each search path (vector, full text) contributes before fusion.
    search_candidates: int = Field(default=40, ge=1, le=1_000)
    hnsw_ef_search: int = Field(default=100, ge=1, le=1_000)
    # Full-text matches ranked per search; the rest of a very common word's matches are not.
    search_fulltext_max_ranked: int = Field(default=500, ge=10, le=1_000_000)
    question_max_chars: int = Field(default=2_000, ge=10, le=100_000)
    answer_max_sources: int = Field(default=6, ge=1, le=50)
    # Cosine similarity a passage needs to count as relevant to the question.
    answer_min_similarity: float = Field(default=0.25, ge=-1, le=1)
    answer_history_messages: int = Field(default=6, ge=0, le=50)
    extractive_max_chars: int = Field(default=700, ge=50, le=10_000)
    # Answer cache (Redis): exact and semantic hits per organisation and corpus version.
    answer_cache_enabled: bool = True
    answer_cache_ttl_seconds: int = Field(default=86_400, ge=1)
    # Cosine similarity an earlier question needs for its answer to be reused.
    answer_cache_similarity: float = Field(default=0.95, ge=0, le=1)
    # Questions per organisation and corpus version the semantic lookup compares with.
    answer_cache_max_entries: int = Field(default=256, ge=1, le=10_000)
    # Memory per process for its copies of those questions' vectors (least recently used
    # organisations dropped first; 256 questions of 384 dimensions take about 420 KB).
    answer_cache_copy_mb: int = Field(default=64, ge=1, le=4096)

    # Gemini (embedder = "gemini" and/or answerer = "gemini").
    gemini_api_key: SecretStr | None = None
    gemini_embedding_model: str = "gemini-embedding-001"
    gemini_answer_model: str = "gemini-2.5-flash"
    gemini_base_url: str | None = None
    gemini_timeout_seconds: float = Field(default=30, gt=0)
    # Longest wait for the first streamed token, and between two tokens.
    gemini_stream_idle_seconds: float = Field(default=20, gt=0)
    gemini_max_attempts: int = Field(default=3, ge=1, le=10)
    # Embeddings of questions and answer sentences (someone is waiting): at most this
    # many attempts (never more than gemini_max_attempts), all within the deadline, after
    # which the search or answer fails with EMBEDDING_UNAVAILABLE. Documents keep the
    # timeout and attempts above.
    gemini_query_max_attempts: int = Field(default=2, ge=1, le=10)
    gemini_query_deadline_seconds: float = Field(default=5, gt=0, le=120)
    gemini_max_output_tokens: int = Field(default=1_024, ge=16, le=65_536)
    llm_breaker_failure_threshold: int = Field(default=5, ge=1)
    llm_breaker_reset_seconds: float = Field(default=30, gt=0)

    # Logs.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = True

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The usual sources, with whitespace-only variables dropped from the
        environment and .env as env_ignore_empty drops empty ones."""
        for source in (env_settings, dotenv_settings):
            if isinstance(source, EnvSettingsSource):  # DotEnvSettingsSource is one too
                source.env_vars = {
                    name: value
                    for name, value in source.env_vars.items()
                    if value is None or value.strip()
                }
        return init_settings, env_settings, dotenv_settings, file_secret_settings

    @field_validator("cors_allow_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("cors_allow_origins")
    @classmethod
    def _bare_origins(cls, origins: list[str]) -> list[str]:
        """Each an origin as browsers send it (scheme, host, optional port; "*" for any),
        normalised as strawberry compares WebSocket handshakes, so HTTP's CORS and the
        WebSocket's check read one list the same way."""
        from strawberry.http.websocket_origin import normalize_allowed_origins

        try:
            normalize_allowed_origins(origins)  # refuses what is more than an origin
        except ValueError as error:
            raise ValueError(str(error).replace(" in allowed_origins", "")) from None
        return [normalize_allowed_origin(origin) for origin in origins]

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _valid_proxies(cls, value: str) -> str:
        return ",".join(trusted_proxy_entries(value))

    @field_validator("database_url", "redis_url", mode="before")
    @classmethod
    def _blank_url_is_unset(cls, value: object) -> object:
        """``FOUNDRY_DATABASE_URL=`` (docker-compose's ``${VAR}`` of an unset variable)
        means no URL: the embedded server, or the production gate's refusal."""
        if isinstance(value, str | SecretStr):
            text = value.get_secret_value() if isinstance(value, SecretStr) else value
            return text.strip() or None
        return value

    @field_validator("database_url")
    @classmethod
    def _asyncpg_url(cls, value: SecretStr | None) -> SecretStr | None:
        """postgres:// and postgresql:// (as providers hand them out) mean the asyncpg
        driver; anything else is refused at start-up with the setting's name."""
        if value is None:
            return None
        url = value.get_secret_value()
        scheme, separator, rest = url.partition("://")
        if not separator or scheme not in DATABASE_SCHEMES:
            raise ValueError(
                "must start with postgresql:// (or postgres://, "
                f"postgresql+asyncpg://), not {scheme + separator if separator else 'that'}"
            )
        return SecretStr(f"postgresql+asyncpg://{rest}")

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(REDIS_SCHEMES):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("state_dir")
    @classmethod
    def _absolute_state_dir(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("rate_limits")
    @classmethod
    def _valid_rate_limits(cls, value: dict[str, str]) -> dict[str, str]:
        from infrastructure.ratelimit.policy import parse_policies

        parse_policies(value)  # raises ValueError: a typo fails at start-up, not in use
        return value

    @model_validator(mode="after")
    def _heartbeat_outlives_its_interval(self) -> Self:
        if self.ingest_heartbeat_timeout_seconds < 3 * self.ingest_heartbeat_seconds:
            raise ValueError(
                "ingest_heartbeat_timeout_seconds must be at least three heartbeat "
                "intervals (ingest_heartbeat_seconds), or a busy worker loses its documents"
            )
        return self

    @model_validator(mode="after")
    def _overlap_below_half_a_chunk(self) -> Self:
        # What the worker's chunker requires (domain/ingestion/chunking.py): refused here,
        # `foundry serve` would start and every worker would fail at start-up.
        if self.chunk_overlap_tokens >= self.chunk_size_tokens // 2:
            raise ValueError(
                f"chunk_overlap_tokens ({self.chunk_overlap_tokens}) must be less than half "
                f"of chunk_size_tokens ({self.chunk_size_tokens})"
            )
        return self

    @model_validator(mode="after")
    def _processing_timeout_outlives_the_actor(self) -> Self:
        # The test environment may shorten it to see the watchdog act within seconds.
        if self.environment == "test":
            return self
        floor = max(INGEST_TIME_LIMIT_SECONDS, self.parse_timeout_seconds)
        if self.ingest_processing_timeout_seconds <= floor:
            raise ValueError(
                f"ingest_processing_timeout_seconds must be more than {floor}, the ingest "
                "job's time limit (and so more than parse_timeout_seconds), or the watchdog "
                "takes documents from workers still working on them"
            )
        return self

    @model_validator(mode="after")
    def _argon2_memory_per_lane(self) -> Self:
        # argon2's own rule; it would otherwise fail when the server builds its hasher.
        if self.argon2_memory_cost_kib < 8 * self.argon2_parallelism:
            raise ValueError(
                "argon2_memory_cost_kib must be at least 8 times argon2_parallelism "
                f"({8 * self.argon2_parallelism} for {self.argon2_parallelism})"
            )
        return self

    @model_validator(mode="after")
    def _local_model_dimensions(self) -> Self:
        if self.embedder != "local":
            return self
        from infrastructure.embeddings.local import DIMENSIONS

        if self.embedding_dimensions != DIMENSIONS:
            raise ValueError(
                f"embedding_dimensions must be {DIMENSIONS} with the local embedder (its "
                f"model's vectors), not {self.embedding_dimensions}; other sizes need "
                "embedder gemini"
            )
        return self

    @model_validator(mode="after")
    def _chunks_fit_the_local_model(self) -> Self:
        from infrastructure.embeddings.onnx_export import MAX_TOKENS

        # The local model reads at most MAX_TOKENS, its [CLS] and [SEP] included: the end
        # of a longer chunk would be searched by full text but never embedded.
        if self.embedder == "local" and self.chunk_size_tokens > MAX_TOKENS - 2:
            raise ValueError(
                f"chunk_size_tokens must be at most {MAX_TOKENS - 2} with the local "
                f"embedder (its model reads {MAX_TOKENS} tokens)"
            )
        return self

    @model_validator(mode="after")
    def _chunks_fit_the_gemini_model(self) -> Self:
        if self.embedder != "gemini":
            return self
        from infrastructure.embeddings.gemini import MAX_CHUNK_TOKENS, MAX_INPUT_TOKENS

        # Gemini reads MAX_INPUT_TOKENS and silently drops the rest; chunks are measured
        # by an estimate that may undercount, hence the margin (embeddings/gemini.py).
        if self.chunk_size_tokens > MAX_CHUNK_TOKENS:
            raise ValueError(
                f"chunk_size_tokens must be at most {MAX_CHUNK_TOKENS} with the gemini "
                f"embedder (its model reads {MAX_INPUT_TOKENS} tokens, and chunk sizes are "
                "estimated for it, so half of that is kept as a margin)"
            )
        return self

    @cached_property
    def is_production(self) -> bool:
        return self.environment == "production"

    @property
    def introspection_enabled(self) -> bool:
        if self.graphql_introspection is None:
            return not self.is_production
        return self.graphql_introspection

    @property
    def storage_dir(self) -> Path:
        return self.state_dir / "storage"

    @property
    def embedded_database(self) -> bool:
        return self.database_url is None

    @property
    def embedded_redis(self) -> bool:
        return self.redis_url is None


def normalize_allowed_origin(origin: str) -> str:
    """One already-checked origin as strawberry normalises it ("*" stays "*")."""
    from strawberry.http.websocket_origin import normalize_origin

    return "*" if origin == "*" else normalize_origin(origin) or origin
