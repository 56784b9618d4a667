"""`foundry` maintenance commands: reembed, storage-check, schema export."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from infrastructure.cli_backends import running_backends, settings_from
from infrastructure.cli_errors import CommandFailed
from infrastructure.container import BackendUrls, Container


async def reembed(container: Container, target: int) -> int:
    """Every live document back to PENDING (out of search until re-ingested) and every
    old vector dropped with the column rebuilt (resized if its size changes), in one
    transaction, then the jobs queued. A run cut short either changed nothing or left
    documents pending on a column that fits the embedder (the watchdog queues them;
    running it again does too); never READY with their vectors dropped, nor pending on
    a column the worker refuses to start on. The old vectors go even when the size stays:
    left in the HNSW graph beside documents that are all pending, they made every
    search walk the graph to pgvector's scan limit and then scan exactly, until the
    re-ingestion had caught up."""
    from infrastructure.database.embedding_column import (
        ColumnBusy,
        column_dimensions,
        resize_and_reset,
    )

    ingestion = container.build_ingestion()
    current = await column_dimensions(container.engine)
    if current != target:
        print(f"Resizing chunks.embedding: vector({current}) -> vector({target})", flush=True)
    try:
        document_ids = await resize_and_reset(container.engine, target, container.clock.now())
    except ColumnBusy as busy:
        raise CommandFailed(str(busy)) from busy
    return await ingestion.enqueue(document_ids)


def cmd_reembed(args: argparse.Namespace) -> int:
    """After changing the embedder: resize the vector column if needed, re-ingest everything."""
    import asyncio

    settings = settings_from(args)

    async def run(urls: BackendUrls) -> int:
        container = Container(settings, urls)
        try:
            queued = await reembed(container, settings.embedding_dimensions)
        finally:
            await container.aclose()
        print(f"Re-queued {queued} documents for {settings.embedder}; workers re-ingest them.")
        return 0

    with running_backends(settings) as urls:
        return asyncio.run(run(urls))


SHOWN = 50  # entries listed per kind; the counts are always complete


def cmd_storage_check(args: argparse.Namespace) -> int:
    """Find stored files nobody refers to and documents whose file is gone; with --remove,
    delete the former. Exit 0 when nothing is left to act on, 1 otherwise."""
    import asyncio
    from datetime import timedelta

    from domain.services.storage_check import StorageCheck, StorageReport
    from infrastructure.container import Container

    settings = settings_from(args)
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

    with running_backends(settings) as urls:
        report = asyncio.run(run(urls))
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
