"""`foundry` command line: up, serve, migrate, worker, ingest, reembed, storage-check,
reset-password, create-account, schema export."""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import socket
import sys
import uuid
from pathlib import Path

import structlog
from alembic.util.exc import CommandError
from pydantic import ValidationError
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from infrastructure import security_gate
from infrastructure.cli_backends import running_backends, settings_from, start_backends
from infrastructure.cli_create_account import add_create_account_parser
from infrastructure.cli_errors import (
    CommandFailed,
    local_failure,
    root_cause,
    settings_problems,
    unreachable,
)
from infrastructure.cli_maintenance import cmd_reembed, cmd_schema_export, cmd_storage_check
from infrastructure.cli_reset_password import add_reset_password_parser
from infrastructure.cli_signals import STOP_SIGNALS, StopRequested
from infrastructure.cli_worker import stop_when_stdin_closes, worker_process
from infrastructure.container import BackendUrls
from infrastructure.database.engine import create_engine, schema_readiness
from infrastructure.database.migrate import head_revision
from infrastructure.database.pgvector_version import is_version_problem
from infrastructure.embedded import EmbeddedServerError
from infrastructure.http.app import create_app
from infrastructure.http.draining import DrainingServer, answer_drain_of
from infrastructure.http.server_config import uvicorn_config
from infrastructure.observability.logging import configure_logging
from infrastructure.runtime import Backends, migrate
from infrastructure.settings import Settings

log = structlog.get_logger("foundry.cli")


def organization_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an organisation id (a UUID): {value!r}") from None


def _serve(settings: Settings, backends: Backends, run_migrations: bool, with_worker: bool) -> int:
    STOP_SIGNALS.install()
    with contextlib.closing(_listen(settings)) as sock:
        try:
            urls = start_backends(backends)
            if run_migrations:
                _migrate(settings, urls)
            else:
                _warn_if_schema_behind(settings, urls)
            if not with_worker:
                _run_api(settings, urls, sock)
                return 0
            with worker_process(settings, urls) as worker:
                backends.outlive(worker.child.pid)
                _run_api(settings, urls, sock)
            return 0 if worker.exit_code is None else 1
        finally:
            STOP_SIGNALS.stopping()
            backends.stop()


def _listen(settings: Settings) -> socket.socket:
    """The API's socket, bound (as uvicorn binds it) before anything starts: a port in use
    fails at once and says so, not after the embedded servers, the migrations and the
    worker have started and "is up" was printed."""
    host, port = settings.host, settings.port
    ipv6 = ":" in host
    where = f"[{host}]:{port}" if ipv6 else f"{host}:{port}"
    sock = socket.socket(socket.AF_INET6 if ipv6 else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise CommandFailed(
                f"{where} is already in use: stop what listens there, or choose another "
                "port (--port or FOUNDRY_PORT)."
            ) from error
        raise CommandFailed(f"Cannot listen on {where}: {error.strerror or error}") from error
    return sock


def _migrate(settings: Settings, urls: BackendUrls) -> None:
    try:
        migrate(settings, urls)
    except SQLAlchemyError as error:
        if unreachable(error):
            raise  # main() says which backend cannot be reached
        # The database answered and refused: a migration failed (it was rolled back).
        raise CommandFailed(f"Cannot migrate the database: {root_cause(error)}") from error
    except CommandError as error:
        if "Can't locate revision" not in str(error):
            raise CommandFailed(f"Cannot migrate the database: {error}") from error
        raise CommandFailed(
            "The database was migrated by a newer release of Knowledge Foundry: "
            f"its revision is unknown to this one (whose newest is {head_revision()}). "
            "Run the newer release, or this one on a database made by it."
        ) from error


def _warn_if_schema_behind(settings: Settings, urls: BackendUrls) -> None:
    """`serve` does not migrate: say at once when the schema is behind this code, rather
    than only through /readyz and the errors of the requests that need the new schema.
    It serves anyway (a migration may be running right now)."""
    import asyncio

    async def readiness() -> str:
        engine = create_engine(urls.database_url, 1, settings.database_statement_timeout_ms)
        try:
            return await schema_readiness(engine)
        finally:
            await engine.dispose()

    try:
        schema = asyncio.run(readiness())
    except (OSError, SQLAlchemyError) as error:  # /readyz reports it as well
        log.warning("startup.schema_unchecked", error=root_cause(error))
        return
    if is_version_problem(schema):
        log.warning("startup.pgvector_too_old", problem=schema)
    elif schema != "ok":
        log.warning("startup.schema_behind", schema=schema, fix="run foundry migrate")


def _run_api(settings: Settings, urls: BackendUrls, sock: socket.socket) -> None:
    app = create_app(settings, urls)
    print(f"Knowledge Foundry is up: GraphiQL at http://{settings.host}:{settings.port}/graphql")
    print(f"Web client: http://{settings.host}:{settings.port}/")
    print(f"State directory: {settings.state_dir}  (Ctrl-C stops everything)")
    sys.stdout.flush()
    config = uvicorn_config(app, settings)
    # On SIGTERM/Ctrl-C: stop accepting, let in-flight answers finish, then stop.
    server = DrainingServer(config, answer_drain_of(app), settings.shutdown_grace_seconds)
    server.run_until_stopped(sock)


def cmd_up(args: argparse.Namespace) -> int:
    """Everything on one machine: embedded backends unless URLs are set, migrations, API."""
    settings = settings_from(args)
    return _serve(settings, Backends(settings), run_migrations=True, with_worker=True)


def cmd_serve(args: argparse.Namespace) -> int:
    """The API alone (production: with FOUNDRY_DATABASE_URL and FOUNDRY_REDIS_URL)."""
    settings = settings_from(args)
    return _serve(settings, Backends(settings), run_migrations=False, with_worker=False)


def cmd_worker(args: argparse.Namespace) -> int:
    """Ingestion workers and the watchdog (embedded backends if no URLs are set)."""
    from workers.process import SchemaBehind, run_worker

    if "MALLOC_ARENA_MAX" not in os.environ:
        # glibc gives every thread its own malloc arena; torch's threads then hold
        # hundreds of MB they no longer use. Re-exec with two arenas (same pid).
        os.environ["MALLOC_ARENA_MAX"] = "2"
        os.execv(sys.executable, [sys.executable, "-m", "infrastructure.cli", *sys.argv[1:]])  # noqa: S606
    settings = settings_from(args)
    STOP_SIGNALS.install()  # run_worker installs its own once the worker runs
    if args.exit_with_stdin:
        stop_when_stdin_closes()
    backends = Backends(settings)
    try:
        return run_worker(settings, start_backends(backends))
    except SchemaBehind as behind:
        # Exit 2, as for a setting: restarting it changes nothing until someone migrates
        # (or upgrades pgvector).
        problem = str(behind)
        if not is_version_problem(problem):
            problem = f"the database schema is behind ({problem})"
        print(f"Cannot start the worker: {problem}.", file=sys.stderr)
        return 2
    finally:
        STOP_SIGNALS.stopping()
        backends.stop()


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    with running_backends(settings) as urls:
        _migrate(settings, urls)
    print("Migrations applied.")
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    """Upload files/folders as a member of an organisation and follow their ingestion."""
    import asyncio

    from infrastructure.cli_ingest import IngestRequest, run_ingest

    settings = settings_from(args)
    request = IngestRequest(
        paths=[Path(p) for p in args.paths],
        email=args.email,
        organization_id=args.org,
        wait=not args.no_wait,
        timeout_seconds=args.timeout,
    )
    with running_backends(settings) as urls:
        return asyncio.run(run_ingest(settings, urls, request))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="foundry", description="Knowledge Foundry server")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, func, help_text in (
        ("up", cmd_up, "run everything on this machine (embedded PostgreSQL/Redis by default)"),
        ("serve", cmd_serve, "run the API server"),
        ("migrate", cmd_migrate, "apply database migrations"),
        ("worker", cmd_worker, "run ingestion workers and the stuck-document watchdog"),
        ("reembed", cmd_reembed, "re-embed every document after changing the embedder"),
    ):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--state-dir", help="where embedded data lives (default ./.foundry)")
        if name in ("up", "serve"):
            sub.add_argument("--host", help="address to listen on (default 127.0.0.1)")
            sub.add_argument("--port", type=int, help="port to listen on (default 8000)")
        if name == "worker":
            # `up`'s worker: stop when `up` exits, however it does (see worker_process).
            sub.add_argument("--exit-with-stdin", action="store_true", help=argparse.SUPPRESS)
        sub.set_defaults(func=func)
    check = commands.add_parser(
        "storage-check", help="find stored files nobody refers to and documents missing theirs"
    )
    check.add_argument("--state-dir", help="where embedded data lives (default ./.foundry)")
    check.add_argument("--remove", action="store_true", help="delete the orphaned files")
    check.add_argument(
        "--grace-minutes",
        type=int,
        default=60,
        help="leave files younger than this alone: an upload may be in flight (default 60)",
    )
    check.set_defaults(func=cmd_storage_check)
    ingest = commands.add_parser("ingest", help="upload files or folders and follow ingestion")
    ingest.add_argument("paths", nargs="+", help="files or folders (searched recursively)")
    ingest.add_argument("--email", required=True, help="the member uploading (editor or admin)")
    ingest.add_argument(
        "--org", type=organization_id, help="organisation id (default: the member's first)"
    )
    ingest.add_argument("--state-dir", help="where embedded data lives (default ./.foundry)")
    ingest.add_argument("--no-wait", action="store_true", help="do not wait for ingestion")
    ingest.add_argument(
        "--timeout", type=float, default=3600, help="seconds to wait (default 3600)"
    )
    ingest.set_defaults(func=cmd_ingest)
    add_reset_password_parser(commands)
    add_create_account_parser(commands)
    schema = commands.add_parser("schema", help="the GraphQL schema").add_subparsers(
        dest="schema_command", required=True
    )
    export = schema.add_parser("export", help="write the schema as SDL")
    export.add_argument("--output", default="schema.graphql", help="default ./schema.graphql")
    export.set_defaults(func=cmd_schema_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from(args)
    except ValidationError as exc:
        print(f"Invalid configuration:\n{settings_problems(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:
        print(f"Invalid configuration: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_json)
    try:
        security_gate.enforce(settings)
    except security_gate.UnsafeConfiguration as exc:
        print(str(exc), file=sys.stderr)
        return 2
    if problems := security_gate.configuration_problems(settings):
        print("Invalid configuration:\n" + "\n".join(f"  {p}" for p in problems), file=sys.stderr)
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        result: int = args.func(args)
    except (CommandFailed, EmbeddedServerError) as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except StopRequested as stop:
        return 128 + stop.signum
    except (OSError, SQLAlchemyError, RedisError) as exc:
        if local_failure(exc):  # e.g. FOUNDRY_WORKER_METRICS_PORT already in use
            print(f"Failed: {root_cause(exc)}", file=sys.stderr)
            return 1
        # A backend that cannot be reached: say which, without a traceback.
        print(f"Cannot reach a backend: {root_cause(exc)}", file=sys.stderr)
        print(
            "Check FOUNDRY_DATABASE_URL and FOUNDRY_REDIS_URL (unset: embedded).", file=sys.stderr
        )
        return 1
    return result


if __name__ == "__main__":
    raise SystemExit(main())
