"""`sync.lookup` without engines: which model encodes a query (the live collection's, never a guess), the retry
when a rebuild swaps collections mid-query, the refusal of a target that cannot search, and how ranked ids become
`Hit`s named from PostgreSQL (rank kept, score rounded, orphans left out)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, date, datetime
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from aegis_pipeline.common.errors import ErrorCode, SyncFailedError
from aegis_pipeline.domain.korean_time import korean_today
from aegis_pipeline.stores import postgres
from aegis_pipeline.sync import lookup
from aegis_pipeline.sync.lookup import SEARCHABLE_TARGETS, Hit, query_search, query_vectors


def test_a_hit_as_a_dict_names_its_policy_by_source_and_source_id() -> None:
    hit = Hit(source_system="bizinfo", external_id="PBLN_1", title="스마트공장 지원", score=0.8123, policy_id="p-1")
    assert hit.as_dict() == {"source_system": "bizinfo", "external_id": "PBLN_1", "title": "스마트공장 지원",
                             "score": 0.8123, "policy_id": "p-1", "application_end_date": None, "days_left": None}
    dated = Hit("bizinfo", "PBLN_2", "수출 바우처", 0.5, "p-2", application_end_date=date(2026, 12, 31), days_left=25)
    assert dated.as_dict()["application_end_date"] == "2026-12-31" and dated.as_dict()["days_left"] == 25
    assert SEARCHABLE_TARGETS == ("vectors", "search")


# --- query_vectors -----------------------------------------------------------------------------------------------


class FakeVectors:
    """Stands in for VectorsTarget: the live (model, dimension) in turn, searches answered or failed in turn."""

    name = "vectors"
    error_code = ErrorCode.MILVUS_SYNC_FAILED

    def __init__(self, live: list[tuple[str | None, int] | None], answers: list[Any]) -> None:
        self._live = live
        self._answers = answers
        self.searched: list[tuple[list[float], int]] = []

    def live_model(self) -> tuple[str | None, int] | None:
        return self._live.pop(0) if len(self._live) > 1 else self._live[0]

    def search(self, embedding: Sequence[float], limit: int, *,
               open_on: date | None = None) -> list[tuple[str, float]]:
        self.searched.append((list(embedding), limit))
        answer = self._answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


class QueryEncoder:
    def __init__(self, model: str) -> None:
        self.model = model
        self.queries: list[str] = []

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        self.queries.extend(texts)
        return np.array([[0.6, 0.8]], dtype=np.float32)


@pytest.fixture
def encoders(monkeypatch: pytest.MonkeyPatch) -> dict[str, QueryEncoder]:
    loaded: dict[str, QueryEncoder] = {}

    def load(model: str) -> QueryEncoder:
        return loaded.setdefault(model, QueryEncoder(model))

    monkeypatch.setattr(lookup, "load_encoder", load)
    return loaded


def test_the_query_is_encoded_by_the_model_of_the_live_collection(encoders: dict[str, QueryEncoder]) -> None:
    target = FakeVectors([("use-multilingual-v3", 512)], [[("p-1", 0.91), ("p-2", 0.5)]])
    assert query_vectors(target, "청년 창업", 2) == [("p-1", 0.91), ("p-2", 0.5)]  # type: ignore[arg-type]
    assert list(encoders) == ["use-multilingual-v3"]
    assert encoders["use-multilingual-v3"].queries == ["청년 창업"]
    assert target.searched == [([pytest.approx(0.6), pytest.approx(0.8)], 2)]


def test_no_collection_yet_is_dp_3001_telling_to_run_the_sync(encoders: dict[str, QueryEncoder]) -> None:
    with pytest.raises(SyncFailedError) as caught:
        query_vectors(FakeVectors([None], []), "q", 5)  # type: ignore[arg-type]
    assert caught.value.code is ErrorCode.MILVUS_SYNC_FAILED
    assert "no collection behind the alias yet: run `aegis-pipeline sync run` first" in str(caught.value)
    assert encoders == {}


@pytest.mark.parametrize(("model", "named"), [("bge-m3", "filled by bge-m3"),
                                              (None, "filled by an unrecorded model")])
def test_a_collection_of_a_model_not_shipped_is_refused_with_the_rebuild_to_run(
        encoders: dict[str, QueryEncoder], model: str | None, named: str) -> None:
    with pytest.raises(SyncFailedError) as caught:
        query_vectors(FakeVectors([(model, 1024)], []), "q", 5)  # type: ignore[arg-type]
    assert named in str(caught.value)
    assert "aegis-pipeline sync rebuild --target vectors" in str(caught.value)
    assert encoders == {}  # never encoded by a model the vectors are not of


def test_a_search_failing_because_a_rebuild_swapped_the_collection_is_run_again(
        encoders: dict[str, QueryEncoder]) -> None:
    swapped = SyncFailedError("collection dropped", code=ErrorCode.MILVUS_SYNC_FAILED)
    # live model read: before the search, after its failure (changed), then for the second attempt
    target = FakeVectors([("use-multilingual-v3", 512), ("use-multilingual-v3", 768), ("use-multilingual-v3", 768)],
                         [swapped, [("p-3", 0.7)]])
    assert query_vectors(target, "q", 1) == [("p-3", 0.7)]  # type: ignore[arg-type]
    assert len(target.searched) == 2


def test_a_search_failing_on_an_unchanged_collection_raises(encoders: dict[str, QueryEncoder]) -> None:
    failure = SyncFailedError("timeout", code=ErrorCode.MILVUS_SYNC_FAILED)
    target = FakeVectors([("use-multilingual-v3", 512)], [failure])
    with pytest.raises(SyncFailedError) as caught:
        query_vectors(target, "q", 1)  # type: ignore[arg-type]
    assert caught.value is failure
    assert len(target.searched) == 1


def test_a_search_query_is_passed_as_written() -> None:
    class Search:
        def search(self, query: str, limit: int, *, open_on: date | None = None) -> list[tuple[str, float]]:
            return [(f"{query}/{limit}/{open_on}", 1.0)]

    assert query_search(Search(), "스마트공장을", 3) == [("스마트공장을/3/None", 1.0)]  # type: ignore[arg-type]
    assert query_search(Search(), "창업", 3, date(2026, 12, 6)) == [("창업/3/2026-12-06", 1.0)]  # type: ignore[arg-type]


def test_the_graph_target_cannot_be_searched(monkeypatch: pytest.MonkeyPatch) -> None:
    closed: list[str] = []

    @contextlib.contextmanager
    def open_target(name: str, settings: Any) -> Any:
        yield SimpleNamespace(name=name)
        closed.append(name)

    monkeypatch.setattr(lookup, "open_target", open_target)
    with pytest.raises(ValueError, match=r"cannot search the graph target; expected one of vectors, search"):
        lookup._query(SimpleNamespace(), "graph", "q", 5, None)  # type: ignore[arg-type]
    assert closed == ["graph"]


# --- search: ranked ids become hits ------------------------------------------------------------------------------


class FakeConnection:
    def __init__(self, rows: list[dict[str, str]]) -> None:
        self.rows = rows
        self.asked: list[list[str]] = []

    async def fetch(self, sql: str, ids: list[str]) -> list[dict[str, str]]:
        self.asked.append(ids)
        return [row for row in self.rows if row["id"] in ids]


@pytest.fixture
def policies(monkeypatch: pytest.MonkeyPatch) -> FakeConnection:
    connection = FakeConnection([
        {"id": "p-1", "source_system": "bizinfo", "external_id": "PBLN_1", "title": "스마트공장 구축",
         "application_end_date": None},
        {"id": "p-2", "source_system": "kstartup", "external_id": "KS-2", "title": "예비창업패키지",
         "application_end_date": date(2099, 1, 1)},
        {"id": "p-3", "source_system": "bizinfo", "external_id": "PBLN_3", "title": "수출 바우처",
         "application_end_date": None},
    ])

    @contextlib.asynccontextmanager
    async def connect(dsn: str, **options: Any) -> AsyncIterator[FakeConnection]:
        assert dsn == "postgresql://aegis@db:5432/aegis"
        yield connection

    monkeypatch.setattr(postgres, "connect", connect)
    return connection


SETTINGS = SimpleNamespace(postgres_dsn=lambda: "postgresql://aegis@db:5432/aegis")


async def test_hits_keep_the_rank_round_the_score_and_leave_out_orphans(monkeypatch: pytest.MonkeyPatch,
                                                                       policies: FakeConnection) -> None:
    ranked = [("p-2", 0.987654321), ("gone", 0.9), ("p-1", 12.3456789)]
    asked_open_on: list[date | None] = []

    def ranked_ids(settings: Any, target: str, query: str, limit: int, open_on: date | None) -> Any:
        asked_open_on.append(open_on)
        return ranked

    monkeypatch.setattr(lookup, "_query", ranked_ids)
    hits = await lookup.search(SETTINGS, "창업", target="search", limit=3)  # type: ignore[arg-type]
    today = korean_today(datetime.now(UTC))
    assert hits == [Hit("kstartup", "KS-2", "예비창업패키지", 0.9877, "p-2", application_end_date=date(2099, 1, 1),
                        days_left=(date(2099, 1, 1) - today).days),
                    Hit("bizinfo", "PBLN_1", "스마트공장 구축", 12.3457, "p-1")]
    assert policies.asked == [["p-2", "gone", "p-1"]]
    await lookup.search(SETTINGS, "창업", target="search", limit=3, open_only=True)  # type: ignore[arg-type]
    assert asked_open_on == [None, today]


async def test_no_match_asks_postgresql_nothing(monkeypatch: pytest.MonkeyPatch, policies: FakeConnection) -> None:
    monkeypatch.setattr(lookup, "_query", lambda settings, target, query, limit, open_on: [])
    assert await lookup.search(SETTINGS, "없는 말") == []  # type: ignore[arg-type]
    assert policies.asked == []
