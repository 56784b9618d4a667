"""The encoder's batches: cut where padding would cost more than another model run."""

from __future__ import annotations

import random

import pytest

from infrastructure.embeddings.length_batches import BATCH_COST_TOKENS, length_batches


def _cost(lengths: list[int], batches: list[range], batch_cost: int) -> int:
    return sum(len(batch) * lengths[batch.start] + batch_cost for batch in batches)


def test_a_short_tail_is_not_padded_to_full_width() -> None:
    lengths = [256] * 9 + [50]
    assert length_batches(lengths, 32) == [range(0, 9), range(9, 10)]


def test_similar_lengths_share_a_batch_up_to_the_limit() -> None:
    assert length_batches([15, 12, 10, 8], 32) == [range(0, 4)]
    assert [len(b) for b in length_batches([100] * 70, 32)] == [32, 32, 6]
    assert length_batches([], 32) == []
    with pytest.raises(ValueError, match="max_batch"):
        length_batches([3], 0)


def test_batches_cover_every_text_once_and_never_cost_more_than_fixed_slices() -> None:
    rng = random.Random(7)
    for _ in range(200):
        lengths = sorted((rng.randint(1, 256) for _ in range(rng.randint(1, 120))), reverse=True)
        limit = rng.randint(1, 40)
        batches = length_batches(lengths, limit)
        assert [i for batch in batches for i in batch] == list(range(len(lengths)))
        assert all(1 <= len(batch) <= limit for batch in batches)
        fixed = [range(i, min(i + limit, len(lengths))) for i in range(0, len(lengths), limit)]
        assert _cost(lengths, batches, BATCH_COST_TOKENS) <= _cost(
            lengths, fixed, BATCH_COST_TOKENS
        )
