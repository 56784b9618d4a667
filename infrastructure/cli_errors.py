"""How the `foundry` command line tells what went wrong: in one line, naming settings,
root causes and unreachable backends, never echoing a secret."""

from __future__ import annotations

from collections.abc import Iterator

from pydantic import ValidationError

from infrastructure.database.engine import unavailable_state


def settings_problems(error: ValidationError) -> str:
    """One line per bad setting, named as it is set, never echoing the value (a URL or
    secret can hold a password)."""
    lines = []
    for problem in error.errors(include_url=False, include_input=False):
        name = "FOUNDRY_" + "_".join(str(part) for part in problem["loc"]).upper()
        lines.append(f"  {name}: {problem['msg'].removeprefix('Value error, ')}")
    return "\n".join(lines)


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
