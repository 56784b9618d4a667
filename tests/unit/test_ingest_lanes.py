"""Ingestion lanes: an organisation's jobs always go to the same lane, every lane is used,
and lane 0 is the queue that existed before lanes."""

from __future__ import annotations

import uuid
from collections import Counter

from infrastructure.queue.jobs import DOCUMENTS_QUEUE, INGEST_LANES, LANE_QUEUES, lane_of


def test_an_organisation_always_gets_the_same_lane() -> None:
    organization = uuid.UUID("5f0c6b7e-3a52-4c1e-9d0a-2b7f4c8e9a10")
    assert {lane_of(uuid.UUID(str(organization))) for _ in range(5)} == {lane_of(organization)}
    # Fixed across processes and releases (a hash of the id, not Python's hash()):
    # API processes and workers of one deployment must agree.
    assert lane_of(organization) == "documents-2"


def test_organisations_spread_over_every_lane() -> None:
    counts = Counter(lane_of(uuid.uuid4()) for _ in range(8000))
    assert set(counts) == set(LANE_QUEUES)
    assert min(counts.values()) > 8000 / INGEST_LANES / 2


def test_lane_zero_is_the_queue_before_lanes() -> None:
    assert LANE_QUEUES[0] == DOCUMENTS_QUEUE
    assert len(set(LANE_QUEUES)) == INGEST_LANES
