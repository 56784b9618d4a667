"""Blank values mean defaults, and settings the server could not start with are refused
when they are read, naming the settings (as `foundry` prints them: exit 2)."""

from __future__ import annotations

import errno
import re
import socket
from pathlib import Path

import pytest
from pydantic import ValidationError

from domain.ingestion.chunking import ChunkingOptions
from infrastructure.auth.jwt_secret import resolve_jwt_secret
from infrastructure.auth.passwords import Argon2PasswordHasher
from infrastructure.cli import main
from infrastructure.cli_errors import local_failure
from infrastructure.settings import INGEST_TIME_LIMIT_SECONDS, Settings

BLANKS = ("", "   ", "\t")


def _assert_defaults(settings: Settings, cwd: Path) -> None:
    assert settings.state_dir == cwd / ".foundry"
    assert settings.jwt_secret is None
    assert settings.model_cache_dir is None
    assert settings.database_url is None and settings.redis_url is None
    assert settings.chunk_size_tokens == 240
    # No secret given: development generates one and keeps it under the state directory.
    secret = resolve_jwt_secret(settings)
    assert re.fullmatch(r"[0-9a-f]{64}", secret)
    assert (cwd / ".foundry" / "secrets" / "jwt_secret").read_text(encoding="utf-8") == secret


@pytest.mark.parametrize("blank", BLANKS)
def test_a_blank_environment_value_means_the_default(
    blank: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in (
        "STATE_DIR",
        "JWT_SECRET",
        "MODEL_CACHE_DIR",
        "DATABASE_URL",
        "REDIS_URL",
        "CHUNK_SIZE_TOKENS",
    ):
        monkeypatch.setenv(f"FOUNDRY_{name}", blank)
    _assert_defaults(Settings(_env_file=None), tmp_path)


@pytest.mark.parametrize("blank", BLANKS)
def test_a_blank_value_in_a_dotenv_file_means_the_default(
    blank: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("STATE_DIR", "JWT_SECRET", "MODEL_CACHE_DIR", "DATABASE_URL", "REDIS_URL"):
        monkeypatch.delenv(f"FOUNDRY_{name}", raising=False)
    (tmp_path / ".env").write_text(
        # .env.example's line, uncommented, then blanks (quoted, so whitespace is kept).
        "FOUNDRY_JWT_SECRET=   # production: `openssl rand -hex 32`\n"
        f'FOUNDRY_STATE_DIR="{blank}"\n'
        f'FOUNDRY_MODEL_CACHE_DIR="{blank}"\n'
        f'FOUNDRY_DATABASE_URL="{blank}"\n'
        f'FOUNDRY_REDIS_URL="{blank}"\n'
        f'FOUNDRY_CHUNK_SIZE_TOKENS="{blank}"\n',
        encoding="utf-8",
    )
    _assert_defaults(Settings(), tmp_path)


def test_a_blank_environment_value_leaves_the_dotenv_files(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Blank is unset: a value in .env still applies."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("FOUNDRY_STATE_DIR=from-dotenv\n", encoding="utf-8")
    monkeypatch.setenv("FOUNDRY_STATE_DIR", " ")
    assert Settings().state_dir == tmp_path / "from-dotenv"


def test_an_overlap_of_half_a_chunk_or_more_is_refused() -> None:
    """The worker's chunker refuses it: the API would start and every worker fail."""
    pattern = r"chunk_overlap_tokens \(32\) must be less than half of chunk_size_tokens \(64\)"
    with pytest.raises(ValidationError, match=pattern):
        Settings(_env_file=None, chunk_size_tokens=64)
    for overlap in (16, 31):
        accepted = Settings(_env_file=None, chunk_size_tokens=64, chunk_overlap_tokens=overlap)
        ChunkingOptions(accepted.chunk_size_tokens, accepted.chunk_overlap_tokens)
    with pytest.raises(ValidationError, match="less than half"):
        Settings(_env_file=None, chunk_size_tokens=65, chunk_overlap_tokens=32)


def test_a_processing_timeout_within_the_ingest_jobs_time_limit_is_refused() -> None:
    """The watchdog would take documents from workers still allowed to work on them."""
    assert INGEST_TIME_LIMIT_SECONDS == 30 * 60
    for seconds in (600, INGEST_TIME_LIMIT_SECONDS):
        with pytest.raises(ValidationError, match="ingest_processing_timeout_seconds must be"):
            Settings(_env_file=None, ingest_processing_timeout_seconds=seconds)
    limit = INGEST_TIME_LIMIT_SECONDS + 1
    assert Settings(_env_file=None, ingest_processing_timeout_seconds=limit)
    # Tests shorten it to see the watchdog act within seconds.
    short = Settings(_env_file=None, environment="test", ingest_processing_timeout_seconds=20)
    assert short.ingest_processing_timeout_seconds == 20


def test_argon2_memory_below_eight_kib_per_lane_is_refused() -> None:
    """argon2's own rule, which would otherwise stop the server when it builds its hasher."""
    with pytest.raises(ValidationError, match="at least 8 times argon2_parallelism"):
        Settings(_env_file=None, argon2_memory_cost_kib=31, argon2_parallelism=4)
    accepted = Settings(_env_file=None, argon2_memory_cost_kib=32, argon2_parallelism=4)
    Argon2PasswordHasher(
        accepted.argon2_time_cost, accepted.argon2_memory_cost_kib, accepted.argon2_parallelism
    )


def test_the_local_embedder_takes_only_its_models_dimensions() -> None:
    with pytest.raises(ValidationError, match="embedding_dimensions must be 384 with the local"):
        Settings(_env_file=None, embedding_dimensions=768)
    assert Settings(_env_file=None, embedding_dimensions=384).embedder == "local"
    assert Settings(_env_file=None, embedder="gemini", embedding_dimensions=768)


def test_foundry_names_the_settings_of_a_refused_combination(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FOUNDRY_CHUNK_SIZE_TOKENS", "64")
    assert main(["schema", "export", "--output", str(tmp_path / "schema.graphql")]) == 2
    assert capsys.readouterr().err == (
        "Invalid configuration:\n  FOUNDRY_CHUNK_OVERLAP_TOKENS (32) must be less than half "
        "of FOUNDRY_CHUNK_SIZE_TOKENS (64)\n"
    )
    monkeypatch.delenv("FOUNDRY_CHUNK_SIZE_TOKENS")
    monkeypatch.setenv("FOUNDRY_ARGON2_MEMORY_COST_KIB", "16")
    assert main(["schema", "export", "--output", str(tmp_path / "schema.graphql")]) == 2
    err = capsys.readouterr().err
    assert (
        "FOUNDRY_ARGON2_MEMORY_COST_KIB must be at least 8 times FOUNDRY_ARGON2_PARALLELISM" in err
    )
    assert not (tmp_path / "schema.graphql").exists()


def test_a_port_in_use_is_not_reported_as_an_unreachable_backend() -> None:
    """FOUNDRY_WORKER_METRICS_PORT (or FOUNDRY_PORT) taken: `foundry` says so, rather
    than "Cannot reach a backend" and to check the database and Redis URLs."""
    with socket.socket() as taken, socket.socket() as second:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError, match="in use") as bind_error:
            second.bind(taken.getsockname())
        port = taken.getsockname()[1]
    assert local_failure(bind_error.value)
    chained = RuntimeError("the worker's metrics server")
    chained.__cause__ = bind_error.value
    assert local_failure(chained)
    with socket.socket() as client, pytest.raises(ConnectionRefusedError) as refused:
        client.connect(("127.0.0.1", port))  # closed: nothing listens there now
    assert not local_failure(refused.value)
    assert not local_failure(OSError(errno.EHOSTUNREACH, "No route to host"))
