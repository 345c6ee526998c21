"""The broker watch with several hot-path replicas starting at once, on the real broker and PostgreSQL: a first
start is recovered by none of them, a broker that lost its data by exactly one (each replica has its own
connections, as separate processes do)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from aegis_pipeline.hot_path.broker_watch import BrokerWatch, sentinel_topic
from aegis_pipeline.settings import Settings
from aegis_pipeline.stores import kafka, postgres

pytestmark = pytest.mark.integration

REPLICAS = 5


async def replicas_checking_at_once(settings: Settings) -> list[BrokerWatch]:
    """`REPLICAS` watches, each with its own pool, checking the sentinel at the same moment."""
    pools = [await postgres.create_pool(settings) for _ in range(REPLICAS)]
    try:
        # check_once uses the relay only through `run`: none is needed to check.
        watches = [BrokerWatch(settings, pool, relay=None) for pool in pools]  # type: ignore[arg-type]
        await asyncio.gather(*(watch.check_once() for watch in watches))
        return watches
    finally:
        for pool in pools:
            await pool.close()


@pytest.fixture
async def fresh_topics(stack: Settings) -> AsyncIterator[Settings]:
    """Settings naming topics the broker does not have yet; the policies already stored are not announced again
    (horizon 0), so a recovery costs nothing here and is seen in `recoveries`."""
    token = uuid.uuid4().hex[:8]
    yield stack.model_copy(update={
        "kafka_topic_raw_policies": f"watch-raw-{token}", "kafka_topic_policy_events": f"watch-events-{token}",
        "kafka_topic_dlq": f"watch-dlq-{token}", "event_reannounce_horizon_hours": 0.0,
    })


async def test_replicas_starting_together_take_a_first_start_for_what_it_is(fresh_topics: Settings) -> None:
    watches = await replicas_checking_at_once(fresh_topics)

    assert [watch.recoveries for watch in watches] == [0] * REPLICAS  # nobody took another's new row for a loss
    topics = await kafka.list_topics(fresh_topics.kafka_bootstrap_servers)
    assert {sentinel_topic(fresh_topics), fresh_topics.kafka_topic_raw_policies,
            fresh_topics.kafka_topic_policy_events, fresh_topics.kafka_topic_dlq} <= set(topics)
    async with postgres.connect(fresh_topics.postgres_dsn()) as connection:
        row = await connection.fetchrow("SELECT recoveries FROM broker_sentinels WHERE sentinel_topic = $1",
                                        sentinel_topic(fresh_topics))
    assert row is not None and row["recoveries"] == 0


async def test_a_lost_broker_is_recovered_by_one_replica_only(fresh_topics: Settings) -> None:
    sentinel = sentinel_topic(fresh_topics)
    async with postgres.connect(fresh_topics.postgres_dsn()) as connection:  # created once, then lost with the broker
        await connection.execute("INSERT INTO broker_sentinels (sentinel_topic) VALUES ($1)", sentinel)

    watches = await replicas_checking_at_once(fresh_topics)

    assert sorted(watch.recoveries for watch in watches) == [0] * (REPLICAS - 1) + [1]
    assert sentinel in await kafka.list_topics(fresh_topics.kafka_bootstrap_servers)
    async with postgres.connect(fresh_topics.postgres_dsn()) as connection:
        assert await connection.fetchval("SELECT recoveries FROM broker_sentinels WHERE sentinel_topic = $1",
                                         sentinel) == 1
