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
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="utf-8").strip()
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        value = secrets.token_hex(32)
        handle.write(value)
    return value
