"""The production gate refuses unsafe settings and names each one."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from infrastructure.security_gate import UnsafeConfiguration, enforce, production_problems
from infrastructure.settings import Settings

GOOD_SECRET = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def production(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "environment": "production",
        "jwt_secret": SecretStr(GOOD_SECRET),
        "database_url": SecretStr("postgresql+asyncpg://app:pw@db/foundry"),
        "redis_url": SecretStr("redis://cache:6379/0"),
        "cors_allow_origins": ["https://app.example.com"],
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


def test_safe_production_settings_pass() -> None:
    assert production_problems(production()) == []
    enforce(production())


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"jwt_secret": None}, "FOUNDRY_JWT_SECRET"),
        ({"jwt_secret": SecretStr("too-short-secret")}, "FOUNDRY_JWT_SECRET"),
        ({"jwt_secret": SecretStr("a" * 40)}, "FOUNDRY_JWT_SECRET"),
        (
            {"jwt_secret": SecretStr("please-change-this-secret-of-at-least-32-bytes")},
            "FOUNDRY_JWT_SECRET",
        ),
        ({"debug": True}, "FOUNDRY_DEBUG"),
        ({"cors_allow_origins": ["*"]}, "FOUNDRY_CORS_ALLOW_ORIGINS"),
        ({"database_url": None}, "FOUNDRY_DATABASE_URL"),
        ({"redis_url": None}, "FOUNDRY_REDIS_URL"),
        ({"embedder": "gemini", "gemini_api_key": None}, "FOUNDRY_GEMINI_API_KEY"),
    ],
)
def test_each_unsafe_setting_is_refused_by_name(overrides: dict[str, object], named: str) -> None:
    with pytest.raises(UnsafeConfiguration) as refused:
        enforce(production(**overrides))
    assert len(refused.value.problems) == 1
    assert named in refused.value.problems[0]


def test_all_problems_are_reported_together() -> None:
    settings = Settings(_env_file=None, environment="production", debug=True)
    problems = production_problems(settings)
    assert len(problems) == 4  # secret, debug, database, redis


def test_development_allows_embedded_defaults() -> None:
    enforce(Settings(_env_file=None))


def test_comma_separated_origins_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOUNDRY_CORS_ALLOW_ORIGINS", "https://a.example, https://b.example")
    origins = Settings(_env_file=None).cors_allow_origins
    assert origins == ["https://a.example", "https://b.example"]


def test_blank_urls_are_unset_and_refused_in_production() -> None:
    """docker-compose's ${VAR} of an unset variable is an empty string, not a URL."""
    settings = production(database_url=SecretStr(" "), redis_url="")
    assert settings.database_url is None and settings.redis_url is None
    named = " ".join(production_problems(settings))
    assert "FOUNDRY_DATABASE_URL" in named and "FOUNDRY_REDIS_URL" in named


def test_provider_style_postgres_urls_use_the_asyncpg_driver() -> None:
    for given in ("postgres://app:pw@db/foundry", "postgresql://app:pw@db/foundry"):
        url = production(database_url=SecretStr(given)).database_url
        assert url is not None
        assert url.get_secret_value() == "postgresql+asyncpg://app:pw@db/foundry"
