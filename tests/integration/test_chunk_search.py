"""Chunk search in PostgreSQL: filtered HNSW scans still return k rows, only READY
documents are searched, and chats stay private to their owner under row-level security."""

from __future__ import annotations

import hashlib
import math
import random
import uuid
from datetime import UTC, datetime
from functools import partial

import pytest
from sqlalchemy import func, insert, select, text, update

from domain.chats.entities import Chat, Message, MessagePage, MessageRole
from domain.entities import Membership, Organization, Principal, Role, User
from infrastructure.container import Container
from infrastructure.database.driver import driver_connection
from infrastructure.database.models import ChatRow, ChunkRow, DocumentRow, MessageRow
from infrastructure.database.repositories.chunk_search import SqlChunkSearch, nearest_query
from infrastructure.database.tenant_settings import (
    HNSW_MAX_SCAN_TUPLES,
    HNSW_SCAN_MEM_MULTIPLIER,
)
from infrastructure.database.uow import SqlUnitOfWork

DIMENSIONS = 384


def unit(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector]


def near(anchor: list[float], rng: random.Random, noise: float) -> list[float]:
    return unit([a + rng.gauss(0, noise) for a in anchor])


async def member(container: Container, organization_id: uuid.UUID | None = None) -> Principal:
    """A new user, admin of a new organisation (or member of the given one)."""
    now = datetime.now(UTC)
    user = User(uuid.uuid4(), f"{uuid.uuid4().hex[:10]}@example.com", now)
    async with container.uow_factory.system() as uow:
        await uow.users.add(user, "not-a-real-hash")
        if organization_id is None:
            organization = Organization(uuid.uuid4(), "search-test", now)
            await uow.organizations.add(organization)
            organization_id = organization.id
        await uow.memberships.add(Membership(user.id, organization_id, Role.ADMIN, now))
        await uow.commit()
    return Principal(user.id, organization_id, Role.ADMIN, uuid.uuid4())


async def document_with_chunks(
    container: Container,
    principal: Principal,
    vectors: list[list[float]],
    status: str = "ready",
    texts: list[str] | None = None,
) -> uuid.UUID:
    document_id = uuid.uuid4()
    async with container.uow_factory.tenant(principal) as uow:
        assert isinstance(uow, SqlUnitOfWork)
        uow.session.add(
            DocumentRow(
                id=document_id,
                organization_id=principal.organization_id,
                uploaded_by=principal.user_id,
                filename="vectors.txt",
                mime_type="text/plain",
                size_bytes=1,
                sha256=hashlib.sha256(document_id.bytes).hexdigest(),
                storage_key=str(document_id),
                status=status,
            )
        )
        await uow.session.flush()
        rows = [
            {
                "id": uuid.uuid4(),
                "organization_id": principal.organization_id,
                "document_id": document_id,
                "ordinal": ordinal,
                "text": texts[ordinal] if texts else f"passage {ordinal} of {document_id}",
                "char_start": 0,
                "char_end": 10,
                "token_count": 3 + ordinal,
                "embedding": vector,
            }
            for ordinal, vector in enumerate(vectors)
        ]
        for offset in range(0, len(rows), 500):
            await uow.session.execute(insert(ChunkRow), rows[offset : offset + 500])
        await uow.commit()
    return document_id


async def test_a_filtered_hnsw_scan_still_returns_k_chunks(container: Container) -> None:
    rng = random.Random(7)
    query = unit([rng.gauss(0, 1) for _ in range(DIMENSIONS)])
    crowd = await member(container)
    # 3,000 chunks of another organisation sit right around the query vector...
    await document_with_chunks(container, crowd, [near(query, rng, 0.01) for _ in range(3_000)])
    # ...while this organisation's 30 chunks are far from it.
    lonely = await member(container)
    far = unit([-q for q in query])
    vectors = [near(far, rng, 0.2) for _ in range(30)]
    document_id = await document_with_chunks(container, lonely, vectors)
    # The ten best similarities, by cosine (the vectors are unit length).
    true_top = sorted(sum(a * b for a, b in zip(v, query, strict=True)) for v in vectors)[::-1]
    async with container.engine.begin() as conn:
        await conn.execute(text("ANALYZE chunks"))

    async with container.uow_factory.tenant(lonely) as uow:
        # The planner's own choice for a small organisation: exact, via the tenant index.
        assert len(await uow.search.nearest(query, 10, None)) == 10
    async with container.uow_factory.tenant(lonely) as uow:
        assert isinstance(uow, SqlUnitOfWork)
        # A large organisation's plan: walk the HNSW graph, filtering as it goes.
        await uow.session.execute(text(FORCE_HNSW))
        found = await uow.search.nearest(query, 10, None)
        only_document = await uow.search.nearest(query, 25, [document_id])
        plan = await explain_vector_search(uow, lonely, query)
        # A crowd larger than what a scan may hold in memory: at 64 kB of work_mem,
        # pgvector's default budget (1 x work_mem) ends the walk long before this
        # organisation's chunks, as the default 4 MB ends it after about 21,000 tuples.
        # The tenant's settings (tenant_settings.py) leave the tuple limit to stop it.
        await uow.session.execute(text("SET LOCAL work_mem = '64kB'"))
        small_memory = await uow.search.nearest(query, 10, None)
        await uow.session.execute(text("SET LOCAL hnsw.scan_mem_multiplier = 1"))
        default_memory = await walk(uow, lonely, query, 10)
        # Without iterative scans the walk stops after ef_search candidates, all of
        # them the other organisation's: this is what the setting is for.
        await uow.session.execute(text("SET LOCAL hnsw.iterative_scan = off"))
        without = await walk(uow, lonely, query, 10)
        # A walk that gave up is followed by an exact scan of the same chunks.
        after_a_short_walk = await uow.search.nearest(query, 10, None)
    assert "ix_chunks_embedding_hnsw" in plan
    assert len(found) == 10
    assert len(only_document) == 25
    assert len(small_memory) == 10
    assert len(default_memory) < 10
    assert len(without) < 10
    similarities = [match.similarity for match in found]
    assert similarities == sorted(similarities, reverse=True)
    assert [match.similarity for match in after_a_short_walk] == pytest.approx(
        true_top[:10], abs=1e-5
    )
    assert all(
        match.document_id == document_id for match in found + only_document + after_a_short_walk
    )


async def walk(
    uow: SqlUnitOfWork, principal: Principal, query: list[float], limit: int
) -> list[uuid.UUID]:
    """The rows of the nearest-chunk statement alone: the walk, without the exact
    scan that follows a short one."""
    statement, arguments = nearest_query(principal.organization_id, query, limit, None)
    rows = await (await driver_connection(uow.session)).fetch(statement, *arguments)
    return [row["id"] for row in rows]


async def test_a_short_answer_is_completed_by_an_exact_scan_of_the_same_chunks(
    container: Container,
) -> None:
    """An organisation or a choice of documents with fewer chunks than asked gets all
    of them, nearest first, and only READY documents of its own."""
    rng = random.Random(13)
    query = unit([rng.gauss(0, 1) for _ in range(DIMENSIONS)])
    principal, other = await member(container), await member(container)
    vectors = [near(query, rng, 0.3) for _ in range(4)]
    ready = await document_with_chunks(container, principal, vectors)
    await document_with_chunks(container, principal, [query] * 2, status="processing")
    await document_with_chunks(container, other, [query] * 5)
    theirs = await document_with_chunks(container, other, [query] * 3)
    expected = sorted(
        (sum(a * b for a, b in zip(v, query, strict=True)) for v in vectors), reverse=True
    )
    async with container.uow_factory.reader(principal) as reader:
        everything = await reader.search.nearest(query, 10, None)
        chosen = await reader.search.nearest(query, 10, [ready, theirs])
        nothing = await reader.search.nearest(query, 10, [theirs])
    for matches in (everything, chosen):
        assert [match.document_id for match in matches] == [ready] * 4
        assert [match.similarity for match in matches] == pytest.approx(expected, abs=1e-5)
    assert nothing == []


async def test_both_kinds_of_tenant_transaction_make_the_hnsw_scan_settings(
    container: Container,
) -> None:
    """The unit of work sends them as parameters, the readers as literals."""
    principal = await member(container)
    names = ", ".join(f"current_setting('{name}')" for name in HNSW_SETTINGS)
    async with container.uow_factory.tenant(principal) as uow:
        assert isinstance(uow, SqlUnitOfWork)
        in_unit_of_work = tuple((await uow.session.execute(text(f"SELECT {names}"))).one())
    async with container.uow_factory.reader(principal) as reader:
        connection = await reader.connection()
        in_reader = tuple(await connection.fetchrow(f"SELECT {names}"))
    ef_search = str(container.settings.hnsw_ef_search)
    expected = (
        "relaxed_order",
        ef_search,
        str(HNSW_MAX_SCAN_TUPLES),
        str(HNSW_SCAN_MEM_MULTIPLIER),
    )
    assert in_unit_of_work == in_reader == expected


HNSW_SETTINGS = (
    "hnsw.iterative_scan",
    "hnsw.ef_search",
    "hnsw.max_scan_tuples",
    "hnsw.scan_mem_multiplier",
)
FORCE_HNSW = (
    "SELECT set_config('enable_sort', 'off', true), set_config('enable_seqscan', 'off', true)"
)


async def explain_vector_search(
    uow: SqlUnitOfWork, principal: Principal, query: list[float]
) -> str:
    rows = await uow.session.execute(
        text(
            "EXPLAIN SELECT id FROM chunks WHERE organization_id = :org "
            "ORDER BY embedding <=> CAST(:q AS vector) LIMIT 10"
        ),
        {"org": principal.organization_id, "q": str(query)},
    )
    return "\n".join(row[0] for row in rows)


async def test_only_ready_documents_are_searched(container: Container) -> None:
    rng = random.Random(11)
    query = unit([rng.gauss(0, 1) for _ in range(DIMENSIONS)])
    principal = await member(container)
    ready = await document_with_chunks(container, principal, [near(query, rng, 0.1)] * 3)
    # Nearer than the ready document's chunks, and matching the same words: a document
    # being (re)processed, or whose reprocessing failed, keeps its chunks meanwhile.
    unready = {
        status: await document_with_chunks(
            container, principal, [near(query, rng, 0.01)] * 3, status=status
        )
        for status in ("pending", "processing", "failed")
    }
    async with container.uow_factory.tenant(principal) as uow:
        vector = await uow.search.nearest(query, 10, None)
        words = await uow.search.matching("passage", query, 10, None)
        chosen = [*unready.values(), ready]
        chosen_vector = await uow.search.nearest(query, 10, chosen)
        chosen_words = await uow.search.matching("passage", query, 10, chosen)
    for found in (vector, words, chosen_vector, chosen_words):
        assert {match.document_id for match in found} == {ready}
    # Both paths report each chunk's stored length ("passage N of ..." holds 3 + N).
    assert all(m.token_count == 3 + int(m.text.split()[1]) for m in vector + words)

    # Once ready, a reprocessed document is found again.
    async with container.uow_factory.tenant(principal) as uow:
        assert isinstance(uow, SqlUnitOfWork)
        await uow.session.execute(
            update(DocumentRow).where(DocumentRow.id == unready["failed"]).values(status="ready")
        )
        await uow.commit()
    async with container.uow_factory.tenant(principal) as uow:
        vector = await uow.search.nearest(query, 10, None)
    assert {match.document_id for match in vector} == {ready, unready["failed"]}


async def test_a_deleted_document_keeps_no_chunks(container: Container) -> None:
    """Search leaves out only the documents that are not ready and not deleted: the
    database itself drops a document's chunks when it is marked deleted."""
    rng = random.Random(12)
    query = unit([rng.gauss(0, 1) for _ in range(DIMENSIONS)])
    principal = await member(container)
    other = await member(container)
    deleted = await document_with_chunks(container, principal, [near(query, rng, 0.1)] * 3)
    kept = await document_with_chunks(container, principal, [near(query, rng, 0.1)] * 2)
    elsewhere = await document_with_chunks(container, other, [near(query, rng, 0.1)] * 2)
    # As the app role, through the status alone (no chunk is deleted by hand).
    async with container.uow_factory.tenant(principal) as uow:
        assert isinstance(uow, SqlUnitOfWork)
        await uow.session.execute(
            update(DocumentRow).where(DocumentRow.id == deleted).values(status="deleted")
        )
        assert await uow.search.nearest(query, 10, [deleted]) == []
        assert await uow.search.matching("passage", query, 10, [deleted]) == []
        await uow.commit()
    async with container.engine.connect() as conn:
        rows = await conn.execute(
            select(ChunkRow.document_id, func.count())
            .where(ChunkRow.document_id.in_([deleted, kept, elsewhere]))
            .group_by(ChunkRow.document_id)
        )
        counts = {document_id: count for document_id, count in rows}
    assert counts == {kept: 2, elsewhere: 2}


async def test_chats_stay_private_even_when_a_query_forgets_the_user(
    container: Container,
) -> None:
    owner = await member(container)
    colleague = await member(container, owner.organization_id)
    now = datetime.now(UTC)
    chat = Chat(uuid.uuid4(), owner.organization_id, owner.user_id, "mine", now, now)
    async with container.uow_factory.tenant(owner) as uow:
        await uow.chats.add(chat)
        await uow.commit()
    async with container.uow_factory.chat_turn(owner) as turn:
        await turn.append(
            Message(uuid.uuid4(), chat.id, owner.organization_id, MessageRole.USER, "hi", [], now)
        )
        await turn.commit()

    async with container.uow_factory.tenant(colleague) as uow:
        assert isinstance(uow, SqlUnitOfWork)
        # No user filter at all: row-level security still hides the owner's rows.
        assert list(await uow.session.scalars(select(ChatRow.id))) == []
        assert list(await uow.session.scalars(select(MessageRow.id))) == []
        assert await uow.messages.pages([chat.id], 10, None) == {
            chat.id: MessagePage(items=[], has_next_page=False)
        }
    async with container.uow_factory.tenant(owner) as uow:
        assert isinstance(uow, SqlUnitOfWork)
        assert list(await uow.session.scalars(select(ChatRow.id))) == [chat.id]
        assert len(list(await uow.session.scalars(select(MessageRow.id)))) == 1


async def test_full_text_ranks_at_most_the_configured_number_of_matches(
    container: Container,
) -> None:
    rng = random.Random(5)
    query = unit([rng.gauss(0, 1) for _ in range(DIMENSIONS)])
    principal = await member(container)
    await document_with_chunks(container, principal, [near(query, rng, 0.1) for _ in range(30)])
    async with container.uow_factory.tenant(principal) as uow:
        assert isinstance(uow, SqlUnitOfWork)
        everything = await uow.search.matching("passage", query, 50, None)
        capped = await SqlChunkSearch(
            partial(driver_connection, uow.session), principal.organization_id, max_ranked=5
        ).matching("passage", query, 50, None)
    assert len(everything) == 30
    assert len(capped) == 5
    assert all(match.rank_score > 0 for match in capped)


async def test_full_text_ranks_by_how_often_the_words_occur_for_the_length(
    container: Container,
) -> None:
    rng = random.Random(6)
    query = unit([rng.gauss(0, 1) for _ in range(DIMENSIONS)])
    principal = await member(container)
    filler = " ".join(f"filler{n}" for n in range(300))
    texts = [
        f"{filler} retention policy",  # one mention in a long text
        "Invoices follow the retention policy.",  # one mention, short
        "Retention policy: the retention policy overrides every other retention rule.",
        "Nothing to see here.",  # no match
    ]
    vectors = [near(query, rng, 0.1) for _ in texts]
    document_id = await document_with_chunks(container, principal, vectors, texts=texts)
    async with container.uow_factory.tenant(principal) as uow:
        assert isinstance(uow, SqlUnitOfWork)
        matches = await uow.search.matching("retention policy", query, 10, None)
    assert [match.document_id for match in matches] == [document_id] * 3
    ranked = [match.text for match in matches]
    assert ranked == [texts[2], texts[1], texts[0]]
    scores = [match.rank_score for match in matches]
    assert scores == sorted(scores, reverse=True) and scores[-1] > 0


async def test_the_full_text_function_sees_only_the_transactions_organisation(
    container: Container,
) -> None:
    """chunk_text_matches runs outside row-level security, with the tenant condition of its
    own: the organisation comes from the transaction's setting, never from the caller."""
    rng = random.Random(8)
    query = unit([rng.gauss(0, 1) for _ in range(DIMENSIONS)])
    alpha, beta = await member(container), await member(container)
    mine = await document_with_chunks(container, alpha, [near(query, rng, 0.1)] * 2)
    chosen = await document_with_chunks(container, alpha, [near(query, rng, 0.1)] * 2)
    theirs = await document_with_chunks(container, beta, [near(query, rng, 0.1)] * 2)
    sql = text("SELECT document_id FROM chunk_text_matches(to_tsquery('passage'), 100, :ids)")
    async with container.uow_factory.tenant(alpha) as uow:
        assert isinstance(uow, SqlUnitOfWork)
        seen = set(await uow.session.scalars(sql, {"ids": None}))
        assert seen == {mine, chosen}
        assert set(await uow.session.scalars(sql, {"ids": [chosen, theirs]})) == {chosen}
        # By document id, another organisation's chunks stay out of reach too.
        assert set(await uow.session.scalars(sql, {"ids": [theirs]})) == set()
    async with container.uow_factory.tenant(beta) as uow:
        assert isinstance(uow, SqlUnitOfWork)
        assert set(await uow.session.scalars(sql, {"ids": None})) == {theirs}
    async with container.uow_factory.system() as uow:
        assert isinstance(uow, SqlUnitOfWork)
        # Without a tenant setting there is no organisation, so nothing matches.
        assert set(await uow.session.scalars(sql, {"ids": None})) == set()
