"""The JWT signing secret: from settings, or (outside production) one kept under the state dir."""

from __future__ import annotations

import os
import secrets

from infrastructure.settings import Settings


def resolve_jwt_secret(settings: Settings) -> str:
    if settings.jwt_secret is not None:
        return settings.jwt_secret.get_secret_value()
    if settings.is_production:
        raise RuntimeError("FOUNDRY_JWT_SECRET is required in production")
    # Development: generate once and keep it so tokens survive restarts and
    # every local process (API, workers) signs with the same key.
    path = settings.state_dir / "secrets" / "jwt_secret"
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    value = secrets.token_hex(32)
    staging = path.with_name(f".jwt_secret.{os.getpid()}")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(value)
    try:
        # Atomic: a concurrent process sees either no file or the whole secret.
        os.link(staging, path)
    except FileExistsError:
        value = path.read_text(encoding="utf-8").strip()
    finally:
        staging.unlink(missing_ok=True)
    if len(value) < 32:
        raise RuntimeError(f"{path} holds a truncated secret; delete it and restart")
    return value
