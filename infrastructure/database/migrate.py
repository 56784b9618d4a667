"""Alembic driven from code: no alembic.ini, the URL and app role come from settings."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

import migrations

MIGRATIONS_DIR = Path(migrations.__file__).resolve().parent


def alembic_config(url: str, app_role: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation treats '%' specially.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["app_role"] = app_role
    return config


def upgrade_to_head(url: str, app_role: str) -> None:
    """Apply all migrations (blocking; call from a thread inside an event loop)."""
    command.upgrade(alembic_config(url, app_role), "head")


@lru_cache(maxsize=1)
def known_revisions() -> tuple[str | None, frozenset[str]]:
    """This code's newest revision and all of its revisions (read once: they are files
    shipped with the code)."""
    script = ScriptDirectory(str(MIGRATIONS_DIR))
    return script.get_current_head(), frozenset(r.revision for r in script.walk_revisions())


def head_revision() -> str | None:
    return known_revisions()[0]
