"""Retrieval quality: vector-only, full-text-only and hybrid search (the search service's own
repository paths and fusion) on a public question-answer dataset, extractive answers against
the gold answers, and the LangChain + Chroma baseline on the same passages.

Dataset: the English ChatterBot corpus, shipped inside the PyPI package `chatterbot-corpus`
(BSD-3-Clause; the `bench` extra). Each conversation opens with a question and its reply; the
knowledge categories (not small talk) give question -> gold reply pairs. Every distinct reply
of at least MIN_WORDS words becomes one document, uploaded through the document service and
ingested by a real `foundry worker`; a question's gold documents are its replies.

    .venv-bench/bin/python bench/retrieval_eval.py              # full run
    .venv-bench/bin/python bench/retrieval_eval.py --size tiny  # smoke run

Prints a table and a JSON line. Needs Redis at FOUNDRY_BENCH_REDIS_URL (default the local
server) and starts its own embedded PostgreSQL in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import importlib.resources
import math
import os
import re
import string
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import baseline
import yaml
from common import (
    admin,
    backends,
    bench_settings,
    free_port,
    log,
    report,
    start_worker,
    stop,
    upload_all,
    wait_for_worker,
    wait_ready,
)

from domain.answers.ports import AnswerRequest, GroundingSource
from domain.entities import Principal
from domain.retrieval.entities import ChunkMatch
from domain.retrieval.fusion import reciprocal_rank_fusion
from domain.services.search import SearchService
from infrastructure.answers.extractive import ExtractiveAnswerer, ExtractiveOptions
from infrastructure.container import BackendUrls, Container
from infrastructure.embeddings.factory import build_local_embedder
from infrastructure.settings import Settings

DATASET = "chatterbot-corpus"
# Small talk (greetings, feelings, the bot's persona) has no answer to retrieve.
SMALL_TALK = {"botprofile", "conversations", "emotion", "gossip", "greetings", "humor"}
MIN_WORDS = 5
SIZES = {"tiny": 40, "full": 0}  # documents (0: all)
KS = (1, 5, 10)
MODES = ("vector", "fulltext", "hybrid")
# What-if (not the product's code): RRF with the full-text list's votes down-weighted.
TEXT_WEIGHTS = (0.5, 0.25)


@dataclass(frozen=True)
class Question:
    text: str
    gold: frozenset[str]  # document names
    answers: tuple[str, ...]


@dataclass(frozen=True)
class Dataset:
    documents: list[tuple[str, str]]  # (name, text)
    questions: list[Question]
    version: str
    files_bytes: int


def load_dataset(limit: int) -> Dataset:
    """(question, reply) pairs of the knowledge categories; replies deduplicated."""
    root = importlib.resources.files("chatterbot_corpus") / "data" / "english"
    names: dict[str, str] = {}  # reply -> document name
    replies: dict[str, set[str]] = {}  # question -> replies
    size = 0
    for entry in sorted(root.iterdir(), key=lambda item: item.name):
        if not entry.name.endswith(".yml"):
            continue
        raw = entry.read_text(encoding="utf-8")
        size += len(raw.encode())
        category = entry.name.removesuffix(".yml")
        if category in SMALL_TALK:
            continue
        for conversation in yaml.safe_load(raw).get("conversations", []):
            if len(conversation) < 2:
                continue
            question, reply = str(conversation[0]).strip(), str(conversation[1]).strip()
            if len(reply.split()) < MIN_WORDS or not question:
                continue
            names.setdefault(reply, f"{category}-{len(names):04d}.txt")
            replies.setdefault(question, set()).add(reply)
    documents = [(name, reply) for reply, name in names.items()]
    if limit:
        documents = documents[:limit]
    kept = {name for name, _ in documents}
    questions = [
        Question(question, frozenset(names[r] for r in answers), tuple(sorted(answers)))
        for question, answers in replies.items()
        if all(names[r] in kept for r in answers)
    ]
    return Dataset(documents, questions, importlib.metadata.version(DATASET), size)


# ---------------------------------------------------------------- metrics


def weighted_fusion(
    vector: Sequence[ChunkMatch], text: Sequence[ChunkMatch], text_weight: float, k: int = 60
) -> list[ChunkMatch]:
    """Reciprocal rank fusion with the full-text ranks weighted (1.0 is the product's)."""
    scores: dict[uuid.UUID, float] = {}
    matches: dict[uuid.UUID, ChunkMatch] = {}
    for weight, ranking in ((1.0, vector), (text_weight, text)):
        for rank, match in enumerate(ranking, start=1):
            scores[match.chunk_id] = scores.get(match.chunk_id, 0.0) + weight / (k + rank)
            matches.setdefault(match.chunk_id, match)
    order = sorted(scores, key=lambda chunk_id: -scores[chunk_id])
    return [matches[chunk_id] for chunk_id in order[: max(KS)]]


def ranked_names(names: Sequence[str]) -> list[str]:
    """Documents in order of their best chunk (a document counts once)."""
    return list(dict.fromkeys(names))


@dataclass
class Scores:
    """Sums over questions; ``summary`` divides."""

    questions: int = 0
    recall: dict[int, float] = field(default_factory=lambda: dict.fromkeys(KS, 0.0))
    reciprocal_rank: float = 0.0
    ndcg10: float = 0.0

    def add(self, ranking: Sequence[str], gold: frozenset[str]) -> None:
        self.questions += 1
        for k in KS:
            self.recall[k] += len(gold & set(ranking[:k])) / len(gold)
        first = next((rank for rank, name in enumerate(ranking[:10], 1) if name in gold), None)
        self.reciprocal_rank += 1 / first if first else 0.0
        dcg = sum(1 / math.log2(rank + 1) for rank, n in enumerate(ranking[:10], 1) if n in gold)
        ideal = sum(1 / math.log2(rank + 1) for rank in range(1, min(len(gold), 10) + 1))
        self.ndcg10 += dcg / ideal

    def summary(self) -> dict[str, float]:
        n = self.questions or 1
        out = {f"recall@{k}": round(self.recall[k] / n, 4) for k in KS}
        out["mrr@10"] = round(self.reciprocal_rank / n, 4)
        out["ndcg@10"] = round(self.ndcg10 / n, 4)
        return out


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_CITATION = re.compile(r"\s*\[\d+\]")


def normalise(text: str) -> list[str]:
    """SQuAD's answer normalisation: lower case, no punctuation, articles or extra spaces."""
    text = "".join(c for c in text.lower() if c not in string.punctuation)
    return _ARTICLES.sub(" ", text).split()


def exact_and_f1(prediction: str, answers: Sequence[str]) -> tuple[float, float]:
    predicted = normalise(_CITATION.sub("", prediction))
    best_em, best_f1 = 0.0, 0.0
    for answer in answers:
        gold = normalise(answer)
        best_em = max(best_em, float(predicted == gold))
        common = sum((Counter(predicted) & Counter(gold)).values())
        if common:
            precision, recall = common / len(predicted), common / len(gold)
            best_f1 = max(best_f1, 2 * precision * recall / (precision + recall))
    return best_em, best_f1


# ---------------------------------------------------------------- the run


@dataclass
class Results:
    size: str
    dataset: str = DATASET
    dataset_version: str = ""
    dataset_licence: str = "BSD-3-Clause"
    dataset_english_bytes: int = 0
    documents: int = 0
    chunks: int = 0
    questions: int = 0
    ingest_seconds: float = 0.0
    modes: dict[str, dict[str, float]] = field(default_factory=dict)
    what_if: dict[str, dict[str, float]] = field(default_factory=dict)
    extractive: dict[str, float] = field(default_factory=dict)
    baseline: dict[str, object] = field(default_factory=dict)
    hybrid_over_best_single_recall5: float = 0.0


async def evaluate(
    container: Container, principal: Principal, data: Dataset, *,
    names: dict[uuid.UUID, str], results: Results, chroma: baseline.ChromaBaseline | None,
) -> None:  # fmt: skip
    settings = container.settings
    candidates = settings.search_candidates
    what_if = {f"hybrid, text weight {w}": w for w in TEXT_WEIGHTS}
    scores = {mode: Scores() for mode in (*MODES, *what_if, "baseline")}
    answerer = ExtractiveAnswerer(
        container.embedder, ExtractiveOptions(max_chars=settings.extractive_max_chars)
    )
    exact = f1 = 0.0
    for question in data.questions:
        embedding = await container.services.search.embed(question.text)
        # The two paths and the fusion of SearchService.retrieve (limit 10), without its
        # document lookup: full text matches every word of the question.
        async with container.uow_factory.tenant(principal) as uow:
            vector = await uow.search.nearest(embedding, candidates, None)
            text = await SearchService._matching(  # the service's own (private) path
                uow.search, question.text, embedding, candidates=candidates, ids=None
            )
        fused = [item.match for item in reciprocal_rank_fusion(vector, text, max(KS))]
        for mode, matches in zip(MODES, (vector, text, fused), strict=True):
            scores[mode].add(ranked_names([names[m.document_id] for m in matches]), question.gold)
        for mode, weight in what_if.items():
            ranking = [names[m.document_id] for m in weighted_fusion(vector, text, weight)]
            scores[mode].add(ranked_names(ranking), question.gold)
        if chroma is not None:
            scores["baseline"].add(
                ranked_names(chroma.search(embedding, candidates)), question.gold
            )
        # The answer service's sources: the best hybrid hits above the similarity floor.
        relevant = [m for m in fused if m.similarity >= settings.answer_min_similarity]
        sources = [
            GroundingSource(index, m.document_id, names[m.document_id], m.page, m.text)
            for index, m in enumerate(relevant[: settings.answer_max_sources], start=1)
        ]
        answer = await answerer.compose(AnswerRequest(question.text, sources, embedding))
        em, f = exact_and_f1(answer, question.answers)
        exact, f1 = exact + em, f1 + f
    results.modes = {mode: scores[mode].summary() for mode in MODES}
    results.what_if = {mode: scores[mode].summary() for mode in what_if}
    n = len(data.questions) or 1
    results.extractive = {"exact_match": round(exact / n, 4), "f1": round(f1 / n, 4)}
    if chroma is not None:
        results.baseline["retrieval"] = scores["baseline"].summary()
    best_single = max(results.modes["vector"]["recall@5"], results.modes["fulltext"]["recall@5"])
    results.hybrid_over_best_single_recall5 = round(
        results.modes["hybrid"]["recall@5"] / best_single if best_single else 0.0, 3
    )


async def run(settings: Settings, urls: BackendUrls, data: Dataset, results: Results) -> None:
    metrics_port = free_port()
    worker = start_worker(settings, urls, metrics_port)
    container = Container(settings, urls)
    try:
        await wait_for_worker(metrics_port, worker)
        principal = await admin(container)
        started = time.perf_counter()
        ids = await upload_all(container, principal, data.documents)
        await wait_ready(container, principal, ids)
        results.ingest_seconds = round(time.perf_counter() - started, 1)
        log(f"Ingested {len(ids)} documents in {results.ingest_seconds} s")
        names = {i: name for i, (name, _) in zip(ids, data.documents, strict=True)}
        documents = await container.services.documents.get_many(principal, ids)
        results.chunks = sum(d.chunk_count for d in documents)
        chroma: baseline.ChromaBaseline | None = None
        if baseline.available():
            embedder = build_local_embedder(settings)
            chroma = baseline.ChromaBaseline(embedder, settings.state_dir / "chroma")
            ingested = await chroma.ingest(data.documents)
            results.baseline["chunks"] = ingested.chunks
        await evaluate(container, principal, data, names=names, results=results, chroma=chroma)
    finally:
        stop(worker)
        await container.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    args = parser.parse_args()
    data = load_dataset(SIZES[args.size])
    results = Results(
        size=args.size,
        dataset_version=data.version,
        dataset_english_bytes=data.files_bytes,
        documents=len(data.documents),
        questions=len(data.questions),
    )
    log(f"{len(data.documents)} documents, {len(data.questions)} questions")
    scratch = tempfile.TemporaryDirectory(prefix="foundry-retrieval-eval-")
    with scratch as state, backends(Path(state), bench_settings(Path(state))) as (settings, urls):
        asyncio.run(run(settings, urls, data, results))
    print_results(results)


def print_results(results: Results) -> None:
    def figures(row: dict[str, float]) -> str:
        return " / ".join(f"{row[key]:.3f}" for key in ("recall@1", "recall@5", "recall@10"))

    rows: list[tuple[str, object]] = [
        ("cores", os.cpu_count() or 1),
        (
            "dataset",
            f"{results.dataset} {results.dataset_version} ({results.dataset_licence}, "
            f"English files {results.dataset_english_bytes:,} bytes)",
        ),
        (
            "documents / chunks / questions",
            f"{results.documents} / {results.chunks} / {results.questions}",
        ),
        ("ingestion (upload -> READY), s", results.ingest_seconds),
    ]
    for mode, row in results.modes.items():
        rows.append((f"{mode}: Recall@1/5/10", figures(row)))
        rows.append((f"{mode}: MRR@10 / nDCG@10", f"{row['mrr@10']:.3f} / {row['ndcg@10']:.3f}"))
    for mode, row in results.what_if.items():
        rows.append((f"what-if {mode}: Recall@1/5/10", figures(row)))
        rows.append((f"what-if {mode}: MRR@10", f"{row['mrr@10']:.3f}"))
    rows.append(
        (
            "hybrid Recall@5 / best single path (target >= 1.05)",
            results.hybrid_over_best_single_recall5,
        )
    )
    rows.append(
        (
            "extractive answers: EM / F1",
            f"{results.extractive['exact_match']:.3f} / {results.extractive['f1']:.3f}",
        )
    )
    retrieval = results.baseline.get("retrieval")
    if isinstance(retrieval, dict):
        hybrid = results.modes["hybrid"]
        rows.append(("baseline (LangChain + Chroma): Recall@1/5/10", figures(retrieval)))
        rows.append(
            (
                "baseline: MRR@10 / nDCG@10",
                f"{retrieval['mrr@10']:.3f} / {retrieval['ndcg@10']:.3f}",
            )
        )
        ratios = {
            key: round(hybrid[key] / retrieval[key], 3) if retrieval[key] else 0.0 for key in hybrid
        }
        results.baseline["hybrid_over_baseline"] = ratios
        rows.append(
            (
                "hybrid / baseline: Recall@5, MRR@10, nDCG@10",
                f"{ratios['recall@5']}, {ratios['mrr@10']}, {ratios['ndcg@10']}",
            )
        )
    else:
        results.baseline["run"] = False
        rows.append(("baseline (LangChain + Chroma)", "not run: `make bench-install` for it"))
    report(rows, {"cores": rows[0][1], **results.__dict__})


if __name__ == "__main__":
    main()
