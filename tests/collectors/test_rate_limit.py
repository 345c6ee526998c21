"""The per-source rate limit and daily request budget hold across replicas (two of each sharing Redis), and
survive Redis loss."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

import pytest

from aegis_pipeline.collectors.rate_limit import BUDGET_KEY_SECONDS, DailyBudgetSpent, RateLimiter, RequestBudget
from aegis_pipeline.settings import Settings
from aegis_pipeline.stores import cache

pytestmark = pytest.mark.integration


async def test_two_replicas_share_one_rate(stack: Settings) -> None:
    source = f"shared_{uuid.uuid4().hex[:6]}"
    clients = [cache.create_client(stack) for _ in range(2)]
    replicas = [RateLimiter(client) for client in clients]
    granted: list[float] = []

    async def take(limiter: RateLimiter, count: int) -> None:
        for _ in range(count):
            await limiter.acquire(source, requests_per_second=20)
            granted.append(time.monotonic())

    started = time.monotonic()
    await asyncio.gather(take(replicas[0], 10), take(replicas[1], 10))
    elapsed = time.monotonic() - started
    for client in clients:
        await client.aclose()
    # 20 requests at 20/s shared: the last is granted 19 slots of 50 ms after the first, so all take at least
    # 0.95 s; each replica alone at 20/s would have finished in about 0.5 s. (Gaps between grants as this process
    # sees them are not checked: a busy host delays when a grant is seen, not when Redis gave it.)
    assert len(granted) == 20
    assert elapsed >= 0.9


async def test_without_redis_the_limit_still_holds_per_process(stack: Settings) -> None:
    unreachable = cache.create_client(stack.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"}),
                                      timeout_seconds=0.2)
    limiter = RateLimiter(unreachable)
    started = time.monotonic()
    for _ in range(6):
        await limiter.acquire("no-redis", requests_per_second=10)
    assert time.monotonic() - started >= 0.45  # 6 grants at 10/s: the first at once, then every 0.1 s
    await unreachable.aclose()


async def test_two_replicas_share_one_daily_budget(stack: Settings) -> None:
    """Five requests a day, asked for by two replicas at once: exactly five pass, the rest stop the run."""
    source = f"budget_{uuid.uuid4().hex[:6]}"
    clients = [cache.create_client(stack) for _ in range(2)]
    replicas = [RequestBudget(client) for client in clients]
    granted: list[int] = []
    refused: list[str] = []

    async def ask(budget: RequestBudget, replica: int) -> None:
        for _ in range(4):
            try:
                await budget.spend(source, 5)
                granted.append(replica)
            except DailyBudgetSpent as stop:
                refused.append(str(stop))

    await asyncio.gather(ask(replicas[0], 0), ask(replicas[1], 1))
    assert len(granted) == 5 and len(refused) == 3
    assert "daily request budget spent (5 requests on" in refused[0]
    assert await replicas[1].used(source) == 8  # every ask is counted, the refused ones too
    ttl = await clients[0].ttl(replicas[0].key(source))
    assert 0 < ttl <= BUDGET_KEY_SECONDS
    for client in clients:
        await client.aclose()


def test_the_budget_day_is_korean() -> None:
    """data.go.kr quotas reset at midnight in Korea: 15:00 UTC is already the next day there."""
    budget = RequestBudget(None)
    assert budget.key("mss_biz", datetime(2026, 12, 5, 14, 59, tzinfo=UTC)).endswith(":2026-12-05")
    assert budget.key("mss_biz", datetime(2026, 12, 5, 15, 0, tzinfo=UTC)).endswith(":2026-12-06")


async def test_without_redis_the_budget_still_holds_per_process(stack: Settings) -> None:
    unreachable = cache.create_client(stack.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"}),
                                      timeout_seconds=0.2)
    budget = RequestBudget(unreachable)
    await budget.spend("no-redis", 2)
    await budget.spend("no-redis", 2)
    with pytest.raises(DailyBudgetSpent):
        await budget.spend("no-redis", 2)
    await budget.spend("no-redis", None)  # a source without a budget is never stopped
    await unreachable.aclose()
