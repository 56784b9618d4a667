"""pgvector's binary format, as the search readers send query vectors."""

from __future__ import annotations

import struct

import pytest

from infrastructure.database.vector_codec import MAX_DIMENSIONS, decode_vector, encode_vector


def test_a_vector_is_its_dimension_a_zero_and_big_endian_floats() -> None:
    data = encode_vector([1.0, -0.5, 0.25])
    assert data == struct.pack(">HH", 3, 0) + struct.pack(">3f", 1.0, -0.5, 0.25)
    assert decode_vector(data) == [1.0, -0.5, 0.25]


def test_values_round_trip_at_float4_precision() -> None:
    values = [i / 7 for i in range(384)]
    assert decode_vector(encode_vector(values)) == pytest.approx(values, rel=1e-6)


@pytest.mark.parametrize("count", [0, MAX_DIMENSIONS + 1])
def test_a_dimension_pgvector_refuses_is_refused_here(count: int) -> None:
    with pytest.raises(ValueError, match="dimensions"):
        encode_vector([0.0] * count)
