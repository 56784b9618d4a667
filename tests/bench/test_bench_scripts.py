"""The bench scripts still run: each at its tiny size, as a subprocess, printing its JSON.

Only that they work and report what they promise is checked, never a figure's speed
(the figures come from full runs by hand; see bench/README.md). The six scripts start
together, since most of their time is spent waiting for a model, PostgreSQL or a worker.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
SCRIPTS = (
    "ingest_bench",
    "query_bench",
    "retrieval_eval",
    "subscriptions_bench",
    "fulltext_pending_bench",
    "answer_cache_bench",
)
TIMEOUT_SECONDS = 900


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, subprocess.Popen[str]]]:
    logs = tmp_path_factory.mktemp("bench-logs")
    started = {
        name: subprocess.Popen(
            [sys.executable, str(BENCH / f"{name}.py"), "--size", "tiny"],
            stdout=subprocess.PIPE,
            stderr=(logs / f"{name}.err").open("w"),
            text=True,
            cwd=BENCH.parent,
        )
        for name in SCRIPTS
    }
    yield started
    for process in started.values():
        if process.poll() is None:
            process.kill()
            process.wait()


def baseline_installed() -> bool:
    """The LangChain + Chroma baseline runs only where the bench extra is installed."""
    probe = "import chromadb, langchain_text_splitters"
    return subprocess.run([sys.executable, "-c", probe], check=False).returncode == 0


def finished(runs: dict[str, subprocess.Popen[str]], name: str) -> dict[str, Any]:
    """The script's JSON line, once it has exited 0; its output when it has not."""
    process = runs[name]
    output, _ = process.communicate(timeout=TIMEOUT_SECONDS)
    assert process.returncode == 0, f"{name} exited {process.returncode}:\n{output[-3000:]}"
    lines = output.strip().splitlines()
    payload: dict[str, Any] = json.loads(lines[-1])
    assert len(lines) > 3, "a table comes before the JSON line"
    assert payload["cores"] >= 1
    return payload


def test_ingest_bench_reports_pipeline_embedder_and_baseline(
    runs: dict[str, subprocess.Popen[str]],
) -> None:
    payload = finished(runs, "ingest_bench")
    assert payload["size"] == "tiny"
    assert payload["corpus_documents"] == 6
    assert payload["corpus_chunks"] > 0
    assert payload["pipeline_chunks_per_s"] > 0
    assert payload["embedder_chunks_per_s"] > 0
    assert payload["efficiency"] > 0
    assert set(payload["stage_share"]) >= {"parse", "chunk", "embed", "store"}
    has_baseline = baseline_installed()
    assert (payload["baseline_chunks"] > 0) is has_baseline
    assert (payload["pipeline_over_baseline"] > 0) is has_baseline


def test_query_bench_reports_search_and_answer_latencies(
    runs: dict[str, subprocess.Popen[str]],
) -> None:
    payload = finished(runs, "query_bench")
    assert payload["size"] == "tiny"
    assert payload["chunks"] >= 2_000
    assert {"c1", "c8", "c32", "small_c1", "small_c8"} <= set(payload["search"])
    assert payload["distractor_chunks"] > 0
    assert all(run["errors"] == 0 for run in payload["search"].values())
    for key in ("p50_ms", "p95_ms", "p99_ms"):
        assert payload["search"]["c8"][key] > 0
    assert payload["answer"]["c1"]["first_token"]["p95_ms"] > 0


def test_retrieval_eval_scores_each_mode_against_gold_labels(
    runs: dict[str, subprocess.Popen[str]],
) -> None:
    payload = finished(runs, "retrieval_eval")
    assert payload["dataset"] == "chatterbot-corpus"
    assert payload["documents"] == 40
    assert payload["questions"] > 0
    metrics = {"recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10"}
    assert set(payload["modes"]) == {"vector", "fulltext", "hybrid"}
    for scores in payload["modes"].values():
        assert set(scores) == metrics
        assert all(0 <= value <= 1 for value in scores.values())
        assert scores["recall@1"] <= scores["recall@5"] <= scores["recall@10"]
    # Every question's reply is among the 40 documents: vector search finds most of them.
    assert payload["modes"]["vector"]["recall@10"] > 0.5
    assert set(payload["extractive"]) == {"exact_match", "f1"}
    assert ("retrieval" in payload["baseline"]) is baseline_installed()


def test_subscriptions_bench_holds_every_idle_subscription(
    runs: dict[str, subprocess.Popen[str]],
) -> None:
    payload = finished(runs, "subscriptions_bench")
    assert payload["attempted"] == 40
    assert payload["opened"] == 40
    assert payload["held"] == 40
    assert payload["server_subscribers"] == 40
    assert payload["refused"] == 0
    assert payload["open_files_limit"] >= 1_024
    assert payload["api_rss_after_mb"] > 0


def test_fulltext_pending_bench_times_the_statement_after_each_step(
    runs: dict[str, subprocess.Popen[str]],
) -> None:
    payload = finished(runs, "fulltext_pending_bench")
    assert payload["size"] == "tiny"
    assert payload["chunks"] >= 2_000
    assert payload["questions"] > 0
    assert set(payload["fastupdate"]) == {"off", "on"}
    for each in payload["fastupdate"].values():
        # A measurement before the first step and after each of the three.
        assert len(each["added"]) == len(each["statement_mean_ms"]) == 4
        assert each["added"][0] == 0
        assert each["added"] == sorted(each["added"]) and each["added"][-1] >= 600
        assert all(ms > 0 for ms in each["statement_mean_ms"] + each["statement_p95_ms"])
        assert each["store_ms_per_chunk"] > 0


def test_answer_cache_bench_times_lookups_with_and_without_a_copy(
    runs: dict[str, subprocess.Popen[str]],
) -> None:
    payload = finished(runs, "answer_cache_bench")
    assert payload["size"] == "tiny"
    assert [row["entries"] for row in payload["figures"]] == [0, 16]
    for row in payload["figures"]:
        for way in ("with_copy", "reading_every_vector"):
            assert row[way]["cpu_us"] > 0
            assert row[way]["wall_us"] > 0
    empty, filled = payload["figures"]
    assert empty["copy_bytes"] == 0
    # 16 rows of 384 float32, and their digests.
    assert filled["copy_bytes"] >= 16 * 384 * 4
    assert filled["growing_cpu_us"] > 0
