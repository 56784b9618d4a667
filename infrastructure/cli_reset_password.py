"""`foundry reset-password --email E [--password-stdin]`: an operator sets a new password
for someone who forgot theirs, and every session of theirs ends. The password is never
an argument (it would show in `ps` and the shell's history): it is read from stdin, or
typed twice at a terminal prompt."""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable
from typing import TextIO

from domain.errors import DomainError, NotFound, WeakPassword
from domain.services.passwords import PasswordReset
from infrastructure.cli_backends import running_backends, settings_from
from infrastructure.container import BackendUrls, Container
from infrastructure.settings import Settings


class PasswordNotRead(Exception):
    """No usable password came in: the command refuses, exit 2."""


def read_new_password(
    from_stdin: bool,
    stdin: TextIO,
    prompt: Callable[[str], str] = getpass.getpass,
) -> str:
    """The new password: the first line of ``stdin`` (its line ending removed) with
    ``from_stdin``, otherwise typed twice at a terminal without echo."""
    if from_stdin:
        line = stdin.readline()
        if not line:
            raise PasswordNotRead("No password on stdin: nothing changed.")
        return line.removesuffix("\n").removesuffix("\r")
    if not stdin.isatty():
        raise PasswordNotRead(
            "stdin is not a terminal, so the new password cannot be prompted for: run "
            "this in a terminal, or pass the password on stdin with --password-stdin. "
            "Nothing changed."
        )
    try:
        first = prompt("New password: ")
        second = prompt("New password again: ")
    except EOFError:
        raise PasswordNotRead("No password entered: nothing changed.") from None
    if first != second:
        raise PasswordNotRead("The two passwords differ: nothing changed.")
    return first


async def reset_password(
    settings: Settings, urls: BackendUrls, email: str, password: str
) -> PasswordReset:
    container = Container(settings, urls)
    try:
        return await container.services.passwords.reset(email, password)
    finally:
        await container.aclose()


def _say(line: str, stream: TextIO) -> None:
    stream.write(f"{line}\n")
    stream.flush()


def cmd_reset_password(args: argparse.Namespace) -> int:
    """Set a new password for an account and end every session of it."""
    import asyncio

    settings = settings_from(args)
    try:
        # Before the backends start: the prompt comes at once, and a refusal costs nothing.
        password = read_new_password(args.password_stdin, sys.stdin)
    except PasswordNotRead as refused:
        _say(str(refused), sys.stderr)
        return 2
    except KeyboardInterrupt:
        _say("\nInterrupted: nothing changed.", sys.stderr)
        return 130
    with running_backends(settings) as urls:
        try:
            reset = asyncio.run(reset_password(settings, urls, args.email, password))
        except NotFound as unknown:
            _say(f"{unknown.message} Nothing changed.", sys.stderr)
            return 1
        except WeakPassword as refused:
            _say(
                f"Password refused ({refused.code.value}): {refused.message} Nothing changed.",
                sys.stderr,
            )
            return 2
        except DomainError as failed:  # SERVICE_UNAVAILABLE: Redis or the database
            _say(
                f"Could not reset the password ({failed.code.value}): {failed.message} "
                "Nothing changed; try again.",
                sys.stderr,
            )
            return 1
    ended = "1 session" if reset.sessions_ended == 1 else f"{reset.sessions_ended} sessions"
    _say(f"Password reset for {reset.email}; {ended} ended (they must log in again).", sys.stdout)
    return 0


def add_reset_password_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    reset = commands.add_parser(
        "reset-password",
        help="set a new password for an account (one who forgot theirs); ends its sessions",
    )
    reset.add_argument("--email", required=True, help="the account's email")
    reset.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the new password from stdin's first line (default: prompt twice)",
    )
    reset.add_argument("--state-dir", help="where embedded data lives (default ./.foundry)")
    reset.set_defaults(func=cmd_reset_password)
