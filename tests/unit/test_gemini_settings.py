"""Settings of the gemini embedder that cannot work are refused at start-up."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from infrastructure.embeddings.gemini import MAX_CHUNK_TOKENS, MAX_INPUT_TOKENS
from infrastructure.settings import Settings


def test_chunks_the_gemini_model_would_cut_off_are_refused() -> None:
    # The field itself allows 8,192; the model reads 2,048 of an estimated count.
    assert MAX_CHUNK_TOKENS < MAX_INPUT_TOKENS
    for size in (MAX_CHUNK_TOKENS + 1, MAX_INPUT_TOKENS, 8_192):
        with pytest.raises(ValidationError, match=f"at most {MAX_CHUNK_TOKENS} with the gemini"):
            Settings(_env_file=None, embedder="gemini", chunk_size_tokens=size)
    accepted = Settings(_env_file=None, embedder="gemini", chunk_size_tokens=MAX_CHUNK_TOKENS)
    assert accepted.chunk_size_tokens == MAX_CHUNK_TOKENS


def test_question_embeddings_get_a_short_deadline_by_default() -> None:
    settings = Settings(_env_file=None)
    assert settings.gemini_query_deadline_seconds <= 10
    assert settings.gemini_query_max_attempts <= settings.gemini_max_attempts
