from __future__ import annotations

import pytest

from tests.conftest import ServerThread, WorkerProcess
from tests.knowledge import Corpus, build_corpus


@pytest.fixture(scope="session")
async def corpus(server: ServerThread, worker: WorkerProcess) -> Corpus:
    """Two organisations' documents, ingested once by the real worker, read-only for tests."""
    return await build_corpus(server.base_url)
