"""`foundry create-account --email E [--organization-id ID [--role R]] [--organization-name
N] [--password-stdin]`: an operator makes an account, whatever FOUNDRY_SIGNUP says (with
sign-up closed, it is how people get in). Without --organization-id it makes what signUp
makes (the account and an organisation it administers); with it, the account joins that
organisation and has none of its own. The password is never an argument: it is read from
stdin, or typed twice at a terminal prompt, as for `foundry reset-password`."""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Callable
from functools import partial
from typing import NoReturn

from domain.entities import Role
from domain.errors import DomainError, EmailTaken, NotFound, ValidationFailed, WeakPassword
from domain.services.accounts import CreatedAccount
from infrastructure.cli_backends import running_backends, settings_from
from infrastructure.cli_reset_password import password_or_exit_code, say
from infrastructure.container import BackendUrls, Container
from infrastructure.settings import Settings

ROLES = [role.name for role in Role]  # VIEWER, EDITOR, ADMIN: as GraphQL spells them


def _organization_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an organisation id (a UUID): {value!r}") from None


async def create_account(
    settings: Settings, urls: BackendUrls, args: argparse.Namespace, password: str
) -> CreatedAccount:
    container = Container(settings, urls)
    try:
        return await container.services.accounts.create_by_operator(
            args.email,
            password,
            organization_id=args.organization_id,
            role=Role[args.role] if args.role is not None else None,
            organization_name=args.organization_name,
        )
    finally:
        await container.aclose()


def cmd_create_account(args: argparse.Namespace, usage_error: Callable[[str], NoReturn]) -> int:
    """Make an account: with a new organisation it administers, or in an existing one."""
    import asyncio

    if args.role is not None and args.organization_id is None:
        usage_error(
            "--role needs --organization-id (without it, the account administers a new "
            "organisation)"
        )
    settings = settings_from(args)
    # Before the backends start: the prompt comes at once, and a refusal costs nothing.
    password = password_or_exit_code(args.password_stdin)
    if isinstance(password, int):
        return password
    with running_backends(settings) as urls:
        try:
            created = asyncio.run(create_account(settings, urls, args, password))
        except WeakPassword as refused:
            say(
                f"Password refused ({refused.code.value}): {refused.message} Nothing changed.",
                sys.stderr,
            )
            return 2
        except ValidationFailed as refused:
            say(f"Refused ({refused.code.value}): {refused.message} Nothing changed.", sys.stderr)
            return 2
        except EmailTaken:
            say(
                f"{args.email.strip()} already has an account: nothing changed. To give it a "
                "place in an organisation, an admin of that organisation adds it with "
                "addMember (email and role).",
                sys.stderr,
            )
            return 1
        except NotFound as unknown:
            say(f"{unknown.message} Nothing changed.", sys.stderr)
            return 1
        except DomainError as failed:  # SERVICE_UNAVAILABLE: the database
            say(
                f"Could not create the account ({failed.code.value}): {failed.message} "
                "Nothing changed; try again.",
                sys.stderr,
            )
            return 1
    # One greppable line each; never the password.
    say(f"user_id={created.user_id}", sys.stdout)
    say(f"organization_id={created.organization_id}", sys.stdout)
    say(f"role={created.role.name}", sys.stdout)
    return 0


def add_create_account_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    create = commands.add_parser(
        "create-account",
        help="make an account (with sign-up closed too): with a new organisation it "
        "administers, or as a member of an existing one",
    )
    create.add_argument("--email", required=True, help="the new account's email")
    where = create.add_mutually_exclusive_group()
    where.add_argument(
        "--organization-id",
        type=_organization_id,
        help="make it a member of this existing organisation (default: a new one it administers)",
    )
    where.add_argument(
        "--organization-name",
        help="the new organisation's name (default: \"<local part of the email>'s organisation\")",
    )
    create.add_argument(
        "--role",
        type=str.upper,
        choices=ROLES,
        help="its role in --organization-id's organisation (default VIEWER)",
    )
    create.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from stdin's first line (default: prompt twice)",
    )
    create.add_argument("--state-dir", help="where embedded data lives (default ./.foundry)")
    create.set_defaults(func=partial(cmd_create_account, usage_error=create.error))
