from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from infrastructure.container import BackendUrls
from infrastructure.settings import Settings
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


@pytest.fixture(scope="module")
def cached_server(settings: Settings, urls: BackendUrls) -> Iterator[ServerThread]:
    """An API with the answer cache on (one per test module that uses it)."""
    server = ServerThread(settings.model_copy(update={"answer_cache_enabled": True}), urls)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def cached_api(cached_server: ServerThread) -> AsyncIterator[GraphQLClient]:
    async with httpx.AsyncClient(base_url=cached_server.base_url, timeout=60) as http:
        yield GraphQLClient(http)
