"""A hot path that always answers (issue 26), on the real engines: while it digests a flood of large valid records
(about 1 MB each, just under MAX_RECORD_BYTES), its `/health` answers every request within a second, asked every
100 ms as a liveness probe would; every record is stored; a record over MAX_RECORD_BYTES is dead-lettered unread.

Before the change, validating and cleaning ran on the event loop, a whole batch at a time: a batch of large
records held the loop for seconds (this test on the code before: two answers late each run, the later one after
3.5 s and 4.2 s), long enough for a liveness probe to restart a healthy pod.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from aegis_pipeline.devstack.synthetic import make_large_record
from aegis_pipeline.hot_path.service import run_hot_path
from aegis_pipeline.settings import Settings
from aegis_pipeline.stores import postgres

pytestmark = pytest.mark.integration

FLOOD = 200  # records of about RECORD_BYTES: some 200 MB, more than one batch holds
RECORD_BYTES = 990_000
KINDS = 10  # the flood's records repeat this many texts under their own ids (generating each takes 25 ms)
PROBE_EVERY_SECONDS = 0.1
PROBE_DEADLINE_SECONDS = 1.0


class HealthProbe:
    """Asks GET /health every PROBE_EVERY_SECONDS from a thread of its own (the event loop under test must not be
    the one that asks) from the moment the operations server announces itself until it stops, and keeps when
    each question was asked (wall clock, as PostgreSQL's) and how long its answer took (a failure: infinite)."""

    def __init__(self, discovery_dir: Path) -> None:
        self._discovery_dir = discovery_dir
        self._stop = threading.Event()
        self.answers: list[tuple[float, float]] = []  # (asked at, time.time(); seconds to answer)
        self._thread = threading.Thread(target=self._run, name="health-probe", daemon=True)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _address(self) -> str | None:
        for announced in self._discovery_dir.glob("hot-path-*.json"):
            return json.loads(announced.read_text(encoding="utf-8"))[0]["targets"][0]
        return None

    def _run(self) -> None:
        while (address := self._address()) is None:
            if self._stop.wait(0.02):
                return
        while not self._stop.is_set():
            asked, sent = time.time(), time.monotonic()
            try:
                with urllib.request.urlopen(f"http://{address}/health", timeout=60) as response:
                    response.read()
                    took = time.monotonic() - sent if response.status == 200 else float("inf")
            except (urllib.error.URLError, OSError):
                if self._address() is None:
                    return  # drained: the hot path stopped its server (it removes its discovery file first)
                took = float("inf")
            self.answers.append((asked, took))
            self._stop.wait(max(0.0, sent + PROBE_EVERY_SECONDS - time.monotonic()))


async def publish(settings: Settings, messages: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, max_request_size=2 * 1024 * 1024)
    await producer.start()
    try:
        for key, value in messages:
            await producer.send(settings.kafka_topic_raw_policies, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def test_health_answers_within_a_second_while_a_flood_of_large_records_is_digested(
        own_topics: Callable[..., Awaitable[Settings]], tmp_path: Path) -> None:
    settings = await own_topics(partitions=2, metrics_port=0, prometheus_file_sd_dir=tmp_path)
    source = f"large_{uuid.uuid4().hex[:6]}"
    kinds = [make_large_record(index, source=source, size_bytes=RECORD_BYTES) for index in range(KINDS)]
    messages = []
    for index in range(FLOOD):
        kind = kinds[index % KINDS]
        record = kind.model_copy(update={
            "collection_metadata": kind.collection_metadata.model_copy(update={"external_id": f"LARGE_{index:04d}"})})
        messages.append((record.collection_metadata.record_key.encode(), record.model_dump_json().encode()))
    assert all(RECORD_BYTES * 0.99 <= len(value) <= settings.max_record_bytes for _, value in messages)
    # Valid to the model too, but over MAX_RECORD_BYTES: refused before it is parsed.
    oversized = make_large_record(FLOOD, source=source, size_bytes=settings.max_record_bytes + 10_000)
    oversized_key = oversized.collection_metadata.record_key
    messages.insert(FLOOD // 2, (oversized_key.encode(), oversized.model_dump_json().encode()))
    await publish(settings, messages)

    with HealthProbe(tmp_path) as probe:
        started = time.time()
        summary = await run_hot_path(settings, asyncio.Event(), drain=True, group_id=f"health-{source}")

    assert (summary.stored, summary.invalid, summary.poison) == (FLOOD, 1, 0)
    slow = [(round(asked - started, 1), round(took, 2)) for asked, took in probe.answers
            if took > PROBE_DEADLINE_SECONDS]
    assert not slow, f"/health answered late (asked at s from the start, took s): {slow}"

    async with postgres.connect(settings.postgres_dsn()) as connection:
        letter = await connection.fetchrow(
            "SELECT error_code, error_message, payload, payload_text FROM dead_letters WHERE record_key = $1",
            oversized_key)
        stored = await connection.fetchrow(
            "SELECT count(*) AS policies, extract(epoch FROM min(h.processed_at)) AS first, "
            "extract(epoch FROM max(h.processed_at)) AS last "
            "FROM processing_history h JOIN policies p ON p.id = h.policy_id WHERE p.source_system = $1", source)
    assert stored["policies"] == FLOOD
    # The probe asked all along: from before the first batch was stored to after the last, never pausing longer
    # than an interval and its slowest answer.
    asked = [asked for asked, _ in probe.answers]
    worst = max(took for _, took in probe.answers)
    assert asked[0] < float(stored["first"]) and asked[-1] > float(stored["last"]), (asked[0], asked[-1], stored)
    assert max(later - earlier for earlier, later in itertools.pairwise(asked)) < PROBE_EVERY_SECONDS + worst + 0.2
    assert letter["error_code"] == "DP_2001" and "MAX_RECORD_BYTES" in letter["error_message"]
    assert letter["payload"] is None and len(letter["payload_text"]) <= 10_000  # kept as text, never parsed
