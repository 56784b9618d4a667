"""Refuse to start in production on unsafe settings; every refusal names its setting."""

from __future__ import annotations

from infrastructure.settings import Settings

MIN_JWT_SECRET_BYTES = 32
# Values that appear in docs and examples: never acceptable as a real secret.
KNOWN_DEFAULT_SECRETS = frozenset(
    {
        "changeme",
        "change-me",
        "secret",
        "jwt-secret",
        "your-secret-key",
        "please-change-this-secret-of-at-least-32-bytes",
        "development-only-secret-not-for-production-use",
    }
)


class UnsafeConfiguration(Exception):
    """Raised with one line per refused setting."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(
            "Refusing to start in production:\n" + "\n".join(f"- {p}" for p in problems)
        )


def production_problems(settings: Settings) -> list[str]:
    """Everything unsafe about ``settings`` for production; empty when safe."""
    problems: list[str] = []
    secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else ""
    if not secret:
        problems.append("FOUNDRY_JWT_SECRET is not set; generate one with `openssl rand -hex 32`.")
    elif len(secret.encode("utf-8")) < MIN_JWT_SECRET_BYTES:
        problems.append(f"FOUNDRY_JWT_SECRET is shorter than {MIN_JWT_SECRET_BYTES} bytes.")
    elif secret.lower() in KNOWN_DEFAULT_SECRETS or len(set(secret)) < 8:
        problems.append("FOUNDRY_JWT_SECRET is a default or trivially guessable value.")
    if settings.debug:
        problems.append("FOUNDRY_DEBUG is on; turn it off in production.")
    if any(origin.strip() == "*" for origin in settings.cors_allow_origins):
        problems.append("FOUNDRY_CORS_ALLOW_ORIGINS contains the wildcard '*'; list exact origins.")
    if settings.database_url is None:
        problems.append(
            "FOUNDRY_DATABASE_URL is not set; the embedded PostgreSQL is for development only."
        )
    if settings.redis_url is None:
        problems.append("FOUNDRY_REDIS_URL is not set; the embedded Redis is for development only.")
    return problems + configuration_problems(settings)


def configuration_problems(settings: Settings) -> list[str]:
    """Settings that cannot work in any environment (checked before anything starts)."""
    problems: list[str] = []
    gemini_key = settings.gemini_api_key.get_secret_value() if settings.gemini_api_key else ""
    if not gemini_key.strip():
        for setting, value in (
            ("FOUNDRY_EMBEDDER", settings.embedder),
            ("FOUNDRY_ANSWERER", settings.answerer),
        ):
            if value == "gemini":
                problems.append(f"FOUNDRY_GEMINI_API_KEY is not set; {setting}=gemini needs it.")
    return problems


def enforce(settings: Settings) -> None:
    """Raise UnsafeConfiguration when production settings are unsafe; no-op otherwise."""
    if settings.is_production:
        problems = production_problems(settings)
        if problems:
            raise UnsafeConfiguration(problems)
