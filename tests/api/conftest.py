from __future__ import annotations

import pytest

from tests.conftest import ServerThread, WorkerProcess
from tests.helpers import GraphQLClient
from tests.knowledge import Corpus, SessionCorpus, build_corpus


@pytest.fixture(scope="session")
async def session_corpus(server: ServerThread, worker: WorkerProcess) -> SessionCorpus:
    """Two organisations' documents, ingested once by the real worker, read-only for tests."""
    return SessionCorpus(await build_corpus(server.base_url))


@pytest.fixture
async def corpus(session_corpus: SessionCorpus, api: GraphQLClient) -> Corpus:
    """The session's corpus with access tokens issued for this test (the corpus is built
    once, access tokens expire after 15 minutes)."""
    return await session_corpus.with_fresh_tokens(api)
