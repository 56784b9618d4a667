"""How the `foundry` command line tells what went wrong: in one line, naming settings,
root causes and unreachable backends, never echoing a secret."""

from __future__ import annotations

import errno
import re
from collections.abc import Iterator

from pydantic import ValidationError

from infrastructure.database.engine import unavailable_state
from infrastructure.settings import Settings


def settings_problems(error: ValidationError) -> str:
    """One line per bad setting, named as it is set, never echoing the value (a URL or
    secret can hold a password). A problem of settings together (a model validator's,
    which has no location) names them in its message: they are written as set there."""
    lines = []
    for problem in error.errors(include_url=False, include_input=False):
        message = problem["msg"].removeprefix("Value error, ")
        if problem["loc"]:
            name = "FOUNDRY_" + "_".join(str(part) for part in problem["loc"]).upper()
            lines.append(f"  {name}: {message}")
        else:
            lines.append(f"  {_SETTING_NAME.sub(_as_set, message)}")
    return "\n".join(lines)


# A settings field's name in a message: lower-case words joined by underscores.
_SETTING_NAME = re.compile(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b")


def _as_set(match: re.Match[str]) -> str:
    word = match.group(0)
    return f"FOUNDRY_{word.upper()}" if word in Settings.model_fields else word


class CommandFailed(Exception):
    """An expected failure: main() prints the message (no traceback) and exits 1."""


def _causes(error: BaseException) -> Iterator[BaseException]:
    yield error
    while error.__cause__ is not None or error.__context__ is not None:
        error = error.__cause__ or error.__context__  # type: ignore[assignment]
        yield error


def root_cause(error: BaseException) -> str:
    *_, root = _causes(error)
    return f"{type(root).__name__}: {root}"


def unreachable(error: BaseException) -> bool:
    """Whether a database error means it could not be reached (no connection, a timeout,
    a server shutting down or full), rather than that it refused a statement."""
    return any(
        isinstance(cause, OSError | TimeoutError)
        or unavailable_state(getattr(cause, "sqlstate", None))
        for cause in _causes(error)
    )


# Failures of this machine rather than of a connection to the database or Redis: a port
# already taken (FOUNDRY_PORT, FOUNDRY_WORKER_METRICS_PORT), an address it does not have,
# a file or directory it may not write, a full or read-only disk.
LOCAL_ERRNOS = frozenset(
    {
        errno.EADDRINUSE,
        errno.EADDRNOTAVAIL,
        errno.EACCES,
        errno.EPERM,
        errno.ENOSPC,
        errno.EROFS,
        errno.EDQUOT,
    }
)


def local_failure(error: BaseException) -> bool:
    """Whether an OSError that ended a command is this machine's (see LOCAL_ERRNOS), not
    a backend that cannot be reached."""
    *_, root = _causes(error)
    return isinstance(root, OSError) and root.errno in LOCAL_ERRNOS
