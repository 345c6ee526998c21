"""Write one record through each engine with the project's own clients and read it back.

Proves a stack (embedded or real) is usable end to end, not merely listening. Every write goes to a scratch
namespace (`aegis_roundtrip*`) and is removed afterwards; nothing the pipeline owns is touched.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aegis_pipeline.settings import Settings
from aegis_pipeline.stores import cache, kafka, postgres, search, vectors
from aegis_pipeline.stores.graph import open_graph_store

SCRATCH = "aegis_roundtrip"


@dataclass(frozen=True)
class RoundTrip:
    engine: str
    ok: bool
    elapsed_ms: int
    detail: str


async def _postgres(settings: Settings, token: str) -> str:
    async with postgres.connect(settings.postgres_dsn()) as connection:
        await connection.execute(
            f"CREATE TEMPORARY TABLE {SCRATCH} (token text PRIMARY KEY, body jsonb NOT NULL)"
        )
        await connection.execute(f"INSERT INTO {SCRATCH} VALUES ($1, $2::jsonb)", token,  # noqa: S608
                                 json.dumps({"title": "청년 창업 지원"}))
        body = await connection.fetchval(f"SELECT body->>'title' FROM {SCRATCH} WHERE token = $1", token)  # noqa: S608
    _expect(body, "청년 창업 지원")
    return "temporary table insert/select"


async def _kafka(settings: Settings, token: str) -> str:
    topic = f"{SCRATCH}-{token}"
    await kafka.ensure_topics(settings, [topic], partitions=1)
    producer = kafka.create_producer(settings)
    with kafka.translate_errors("produce"):
        await producer.start()
        try:
            await producer.send_and_wait(topic, token.encode(), key=b"roundtrip")
        finally:
            await producer.stop()
    consumer = kafka.create_consumer(settings, topic, group_id=f"{SCRATCH}-{token}")
    with kafka.translate_errors("consume"):
        await consumer.start()
        try:
            message = await asyncio.wait_for(consumer.getone(), timeout=20)
        finally:
            await consumer.stop()
    _expect(message.value, token.encode())
    return f"produced and consumed on {topic}"


async def _redis(settings: Settings, token: str) -> str:
    client = cache.create_client(settings)
    try:
        with cache.translate_errors("set/get"):
            await client.set(f"{SCRATCH}:{token}", "정책", ex=60)
            value = await client.get(f"{SCRATCH}:{token}")
            await client.delete(f"{SCRATCH}:{token}")
    finally:
        await client.aclose()
    _expect(value.decode() if value else None, "정책")
    return "set/get/delete with TTL"


def _milvus(settings: Settings, token: str) -> str:
    collection = f"{SCRATCH}_{token}"
    client = vectors.create_client(settings)
    try:
        with vectors.translate_errors("upsert/get"):
            client.create_collection(collection, dimension=4, primary_field_name="id", id_type="string",
                                     max_length=64)
            client.upsert(collection, [{"id": token, "vector": [0.1, 0.2, 0.3, 0.4]}])
            rows = client.get(collection, ids=[token])
            client.drop_collection(collection)
    finally:
        client.close()
    _expect(rows[0]["id"] if rows else None, token)
    return f"collection {collection} created, upserted, read, dropped"


def _graph(settings: Settings, token: str) -> str:
    label = "RoundTrip"
    with open_graph_store(settings) as store:
        store.ensure_node_type(label, "token", {"token": "STRING", "title": "STRING"})
        store.run(f"MERGE (n:{label} {{token: $token}}) SET n.title = $title", {"token": token, "title": "지원사업"})
        rows = store.run(f"MATCH (n:{label} {{token: $token}}) RETURN n.title AS title", {"token": token})
        store.run(f"MATCH (n:{label} {{token: $token}}) DELETE n", {"token": token})
    _expect(rows[0]["title"] if rows else None, "지원사업")
    return "node merged, matched, deleted"


def _search(settings: Settings, token: str) -> str:
    index = f"{SCRATCH}-{token}"
    client = search.create_client(settings)
    try:
        with search.translate_errors("index/get"):
            client.indices.create(index=index, mappings={"properties": {"title": {"type": "text"}}})
            client.index(index=index, id=token, document={"title": "소상공인 정책자금"}, refresh=True)
            document = client.get(index=index, id=token)
            client.indices.delete(index=index)
    finally:
        client.close()
    _expect(document["_source"]["title"], "소상공인 정책자금")
    return f"index {index} created, document written and read, index deleted"


def _expect(actual: object, expected: object) -> None:
    if actual != expected:
        raise AssertionError(f"read back {actual!r}, wrote {expected!r}")


async def run_roundtrips(settings: Settings) -> list[RoundTrip]:
    """One round trip per engine, in sequence; a failing engine is reported, never hidden or fatal."""
    token = uuid.uuid4().hex[:12]
    steps: dict[str, Callable[[], Awaitable[str]]] = {
        "postgres": lambda: _postgres(settings, token),
        "kafka": lambda: _kafka(settings, token),
        "redis": lambda: _redis(settings, token),
        "milvus": lambda: asyncio.to_thread(_milvus, settings, token),
        "graph": lambda: asyncio.to_thread(_graph, settings, token),
        "search": lambda: asyncio.to_thread(_search, settings, token),
    }
    results = []
    for engine, step in steps.items():
        started = time.monotonic()
        try:
            detail, ok = await step(), True
        except Exception as error:  # report any failure as this engine's result, keep checking the others
            detail, ok = f"{type(error).__name__}: {error}", False
        results.append(RoundTrip(engine, ok, int((time.monotonic() - started) * 1000), detail))
    return results
