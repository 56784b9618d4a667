"""`foundry` command line: up, serve, migrate, worker, ingest, reembed, storage-check,
schema export."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic.util.exc import CommandError
from pydantic import ValidationError
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from infrastructure import security_gate
from infrastructure.cli_signals import STOP_SIGNALS, StopRequested
from infrastructure.container import BackendUrls, Container
from infrastructure.database.migrate import head_revision
from infrastructure.embedded import EmbeddedServerError
from infrastructure.http.app import create_app
from infrastructure.http.draining import DrainingServer, answer_drain_of
from infrastructure.http.server_config import uvicorn_config
from infrastructure.observability.logging import configure_logging
from infrastructure.runtime import Backends, migrate
from infrastructure.settings import Settings


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


def organization_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an organisation id (a UUID): {value!r}") from None


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, object] = {}
    if getattr(args, "state_dir", None):
        overrides["state_dir"] = Path(args.state_dir)
    if getattr(args, "host", None):
        overrides["host"] = args.host
    if getattr(args, "port", None):
        overrides["port"] = args.port
    return Settings(**overrides)  # type: ignore[arg-type]


class SupervisedWorker:
    """`foundry up`'s worker child. Should it exit on its own (a crash, the OOM killer, a
    setting only the worker checks), the API would go on accepting uploads nobody
    processes: the whole process stops instead and exits 1, naming the worker's code."""

    def __init__(self, child: subprocess.Popen[bytes]) -> None:
        self.child = child
        self.stopping = False
        self.exit_code: int | None = None
        self._watcher = threading.Thread(target=self._watch, name="worker-watch", daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        code = self.child.wait()
        if self.stopping:
            return
        self.exit_code = code
        print(
            f"The ingestion worker exited unexpectedly (exit code {code}); stopping, "
            "since uploads would never be processed. Its log is above.",
            file=sys.stderr,
            flush=True,
        )
        os.kill(os.getpid(), signal.SIGTERM)  # the API's graceful shutdown


@contextmanager
def worker_process(settings: Settings, urls: BackendUrls) -> Iterator[SupervisedWorker]:
    """`foundry worker` as a child process using the same backends; stopped on exit."""
    env = {
        **os.environ,
        "FOUNDRY_DATABASE_URL": urls.database_url,
        "FOUNDRY_REDIS_URL": urls.redis_url,
        "FOUNDRY_STATE_DIR": str(settings.state_dir),
        # `up --host` also decides where the worker's metrics listen.
        "FOUNDRY_HOST": settings.host,
    }
    # Its own session: a terminal's Ctrl-C reaches only this process, which stops the
    # API gracefully and then the worker (a worker gone first would look like a crash).
    with contextlib.ExitStack() as cleanup:
        with STOP_SIGNALS.deferred():  # a stop requested meanwhile finds it there to stop
            child = subprocess.Popen(
                [sys.executable, "-m", "infrastructure.cli", "worker"],
                env=env,
                start_new_session=True,
            )
            worker = SupervisedWorker(child)
            cleanup.callback(_stop_worker, worker, settings.shutdown_grace_seconds + 10)
        yield worker


def _stop_worker(worker: SupervisedWorker, timeout: float) -> None:
    STOP_SIGNALS.stopping()
    worker.stopping = True
    child = worker.child
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _serve(settings: Settings, backends: Backends, run_migrations: bool, with_worker: bool) -> int:
    STOP_SIGNALS.install()
    try:
        urls = _start(backends)
        if run_migrations:
            _migrate(settings, urls)
        if not with_worker:
            _run_api(settings, urls)
            return 0
        with worker_process(settings, urls) as worker:
            _run_api(settings, urls)
        return 0 if worker.exit_code is None else 1
    finally:
        STOP_SIGNALS.stopping()
        backends.stop()


def _start(backends: Backends) -> BackendUrls:
    with STOP_SIGNALS.deferred():
        return backends.start()


def _migrate(settings: Settings, urls: BackendUrls) -> None:
    try:
        migrate(settings, urls)
    except CommandError as error:
        if "Can't locate revision" not in str(error):
            raise CommandFailed(f"Cannot migrate the database: {error}") from error
        raise CommandFailed(
            "The database was migrated by a newer release of Knowledge Foundry: "
            f"its revision is unknown to this one (whose newest is {head_revision()}). "
            "Run the newer release, or this one on a database made by it."
        ) from error


def _run_api(settings: Settings, urls: BackendUrls) -> None:
    app = create_app(settings, urls)
    print(f"Knowledge Foundry is up: GraphiQL at http://{settings.host}:{settings.port}/graphql")
    print(f"Web client: http://{settings.host}:{settings.port}/")
    print(f"State directory: {settings.state_dir}  (Ctrl-C stops everything)")
    sys.stdout.flush()
    config = uvicorn_config(app, settings)
    # On SIGTERM/Ctrl-C: stop accepting, let in-flight answers finish, then stop.
    server = DrainingServer(config, answer_drain_of(app), settings.shutdown_grace_seconds)
    server.run_until_stopped()


def cmd_up(args: argparse.Namespace) -> int:
    """Everything on one machine: embedded backends unless URLs are set, migrations, API."""
    settings = _settings(args)
    return _serve(settings, Backends(settings), run_migrations=True, with_worker=True)


def cmd_serve(args: argparse.Namespace) -> int:
    """The API alone (production: with FOUNDRY_DATABASE_URL and FOUNDRY_REDIS_URL)."""
    settings = _settings(args)
    return _serve(settings, Backends(settings), run_migrations=False, with_worker=False)


def cmd_worker(args: argparse.Namespace) -> int:
    """Ingestion workers and the watchdog (embedded backends if no URLs are set)."""
    from workers.process import run_worker

    if "MALLOC_ARENA_MAX" not in os.environ:
        # glibc gives every thread its own malloc arena; torch's threads then hold
        # hundreds of MB they no longer use. Re-exec with two arenas (same pid).
        os.environ["MALLOC_ARENA_MAX"] = "2"
        os.execv(sys.executable, [sys.executable, "-m", "infrastructure.cli", *sys.argv[1:]])  # noqa: S606
    settings = _settings(args)
    STOP_SIGNALS.install()  # run_worker installs its own once the worker runs
    backends = Backends(settings)
    try:
        return run_worker(settings, _start(backends))
    finally:
        STOP_SIGNALS.stopping()
        backends.stop()


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = _settings(args)
    backends = Backends(settings)
    try:
        _migrate(settings, backends.start())
    finally:
        backends.stop()
    print("Migrations applied.")
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    """Upload files/folders as a member of an organisation and follow their ingestion."""
    import asyncio

    from infrastructure.cli_ingest import IngestRequest, run_ingest

    settings = _settings(args)
    request = IngestRequest(
        paths=[Path(p) for p in args.paths],
        email=args.email,
        organization_id=args.org,
        wait=not args.no_wait,
        timeout_seconds=args.timeout,
    )
    backends = Backends(settings)
    try:
        return asyncio.run(run_ingest(settings, backends.start(), request))
    finally:
        backends.stop()


async def reembed(container: Container, target: int) -> int:
    """Documents back to PENDING first, then the column resized, then the jobs queued: a
    run cut short leaves documents pending (run it again; the watchdog queues them), never
    READY with their vectors dropped, which nothing would find or report."""
    from infrastructure.database.embedding_column import (
        column_dimensions,
        resize_embedding_column,
    )

    ingestion = container.build_ingestion()
    document_ids = await ingestion.reset_all()
    current = await column_dimensions(container.engine)
    if current != target:
        print(f"Resizing chunks.embedding: vector({current}) -> vector({target})")
        await resize_embedding_column(container.engine, target)
    return await ingestion.enqueue(document_ids)


def cmd_reembed(args: argparse.Namespace) -> int:
    """After changing the embedder: resize the vector column if needed, re-ingest everything."""
    import asyncio

    settings = _settings(args)

    async def run(urls: BackendUrls) -> int:
        container = Container(settings, urls)
        try:
            queued = await reembed(container, settings.embedding_dimensions)
        finally:
            await container.aclose()
        print(f"Re-queued {queued} documents for {settings.embedder}; workers re-ingest them.")
        return 0

    backends = Backends(settings)
    try:
        return asyncio.run(run(backends.start()))
    finally:
        backends.stop()


SHOWN = 50  # entries listed per kind; the counts are always complete


def cmd_storage_check(args: argparse.Namespace) -> int:
    """Find stored files nobody refers to and documents whose file is gone; with --remove,
    delete the former. Exit 0 when nothing is left to act on, 1 otherwise."""
    import asyncio
    from datetime import timedelta

    from domain.services.storage_check import StorageCheck, StorageReport
    from infrastructure.container import Container

    settings = _settings(args)
    if args.grace_minutes < 1:
        print("--grace-minutes must be at least 1 (uploads in flight)", file=sys.stderr)
        return 2

    async def run(urls: BackendUrls) -> StorageReport:
        container = Container(settings, urls)
        try:
            check = StorageCheck(container.uow_factory, container.blobs, container.clock)
            return await check.run(timedelta(minutes=args.grace_minutes), remove=args.remove)
        finally:
            await container.aclose()

    backends = Backends(settings)
    try:
        report = asyncio.run(run(backends.start()))
    finally:
        backends.stop()
    print(f"Checked {report.files} stored files under {settings.storage_dir}.")
    verb = "removed" if args.remove else "to remove with --remove"
    print(f"Orphaned files older than {args.grace_minutes} min: {len(report.orphans)} ({verb})")
    for orphan in report.orphans[:SHOWN]:
        kind = "staging" if orphan.staging else "blob"
        print(f"  {kind} {orphan.key}  {orphan.size} bytes  {orphan.modified_at.isoformat()}")
    print(f"Orphaned files too recent to judge: {report.recent}")
    print(f"Documents whose file is missing: {len(report.missing)}")
    for missing in report.missing[:SHOWN]:
        print(
            f"  document {missing.document_id}  organisation {missing.organization_id}"
            f"  {missing.status.value}"
        )
    print(f"Files that are not blobs (left alone): {len(report.unknown)}")
    for unknown in report.unknown[:SHOWN]:
        print(f"  {unknown.key}")
    return 0 if report.clean else 1


def schema_sdl() -> str:
    """The GraphQL schema as SDL, exactly as `foundry schema export` writes it."""
    from schema.build import build_schema

    return build_schema().as_str() + "\n"


def cmd_schema_export(args: argparse.Namespace) -> int:
    """Write the SDL (web/app generates its TypeScript types from it)."""
    output = Path(args.output)
    sdl = schema_sdl()
    try:
        output.write_text(sdl, encoding="utf-8")
    except OSError as error:
        raise CommandFailed(f"Cannot write {output}: {error.strerror or error}") from error
    print(f"Wrote {output}")
    return 0


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
        settings = _settings(args)
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
        # A backend that cannot be reached: say which, without a traceback.
        print(f"Cannot reach a backend: {root_cause(exc)}", file=sys.stderr)
        print(
            "Check FOUNDRY_DATABASE_URL and FOUNDRY_REDIS_URL (unset: embedded).", file=sys.stderr
        )
        return 1
    return result


def root_cause(error: BaseException) -> str:
    while error.__cause__ is not None or error.__context__ is not None:
        error = error.__cause__ or error.__context__  # type: ignore[assignment]
    return f"{type(error).__name__}: {error}"


if __name__ == "__main__":
    raise SystemExit(main())
