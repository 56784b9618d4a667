"""`foundry reset-password --email E [--password-stdin] [--revoke-api-keys]`: an operator
sets a new password for someone who forgot theirs, and every session of theirs ends; with
--revoke-api-keys (a compromised account) every API key they created is revoked too. The
password is never an argument (it would show in `ps` and the shell's history): it is read
from stdin, or typed twice at a terminal prompt."""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable
from typing import TextIO

from domain.errors import DomainError, NotFound, WeakPassword
from domain.services.passwords import ApiKeysNotRevoked, ApiKeysRevoked, PasswordReset
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
    settings: Settings,
    urls: BackendUrls,
    email: str,
    password: str,
    *,
    revoke_api_keys: bool = False,
) -> PasswordReset:
    container = Container(settings, urls)
    try:
        return await container.services.passwords.reset(
            email, password, revoke_api_keys=revoke_api_keys
        )
    finally:
        await container.aclose()


def password_or_exit_code(from_stdin: bool) -> str | int:
    """The new password (``read_new_password`` on this process's stdin), or the exit code
    of a refusal, said on stderr: 2 when none usable came in, 130 when interrupted."""
    try:
        return read_new_password(from_stdin, sys.stdin)
    except PasswordNotRead as refused:
        say(str(refused), sys.stderr)
        return 2
    except KeyboardInterrupt:
        say("\nInterrupted: nothing changed.", sys.stderr)
        return 130


def say(line: str, stream: TextIO) -> None:
    """One line of an operator command's output, flushed at once."""
    stream.write(f"{line}\n")
    stream.flush()


def _count(number: int, one: str, many: str) -> str:
    return f"{number} {one if number == 1 else many}"


def _reset_done(reset: PasswordReset) -> str:
    ended = _count(reset.sessions_ended, "session", "sessions")
    return f"Password reset for {reset.email}; {ended} ended (they must log in again)."


def _keys_revoked(revoked: ApiKeysRevoked) -> str:
    keys = _count(revoked.keys, "API key", "API keys")
    where = _count(revoked.organizations, "organisation", "organisations")
    return f"{keys} revoked, in {where}."


def cmd_reset_password(args: argparse.Namespace) -> int:
    """Set a new password for an account and end every session of it; with
    --revoke-api-keys, then revoke every API key it created. The password comes first, so
    that no new key can be made with the account while its keys are revoked; a failure
    after it says the password was reset, and running the command again finishes."""
    import asyncio

    settings = settings_from(args)
    # Before the backends start: the prompt comes at once, and a refusal costs nothing.
    password = password_or_exit_code(args.password_stdin)
    if isinstance(password, int):
        return password
    with running_backends(settings) as urls:
        try:
            reset = asyncio.run(
                reset_password(
                    settings, urls, args.email, password, revoke_api_keys=args.revoke_api_keys
                )
            )
        except ApiKeysNotRevoked as partly:
            # Checked before DomainError: here the password WAS reset (and committed).
            say(_reset_done(partly.reset), sys.stdout)
            done = partly.reset.api_keys or ApiKeysRevoked(0, 0)
            say(
                f"But not every API key could be revoked ({partly.code.value}): "
                f"{partly.message} {_keys_revoked(done)} Run it again to revoke the rest "
                "(keys already revoked are skipped).",
                sys.stderr,
            )
            return 1
        except NotFound as unknown:
            say(f"{unknown.message} Nothing changed.", sys.stderr)
            return 1
        except WeakPassword as refused:
            say(
                f"Password refused ({refused.code.value}): {refused.message} Nothing changed.",
                sys.stderr,
            )
            return 2
        except DomainError as failed:  # SERVICE_UNAVAILABLE: Redis or the database
            say(
                f"Could not reset the password ({failed.code.value}): {failed.message} "
                "Nothing changed; try again.",
                sys.stderr,
            )
            return 1
    say(_reset_done(reset), sys.stdout)
    if reset.api_keys is not None:
        say(_keys_revoked(reset.api_keys), sys.stdout)
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
    reset.add_argument(
        "--revoke-api-keys",
        action="store_true",
        help="also revoke every API key the account created, in every organisation "
        "(for a compromised account); after the password is reset",
    )
    reset.add_argument("--state-dir", help="where embedded data lives (default ./.foundry)")
    reset.set_defaults(func=cmd_reset_password)
