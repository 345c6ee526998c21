"""A sync, rebuild or repair of a target waits for another one of the same target (a long encode, a repair), and
past SYNC_LOCK_WAIT_SECONDS reports the target `busy`: not a failure, its watermark left for the next run. On the
real stack: the other run is a session holding the target's lock."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest

from aegis_pipeline.cold_path.run import run_cold_path
from aegis_pipeline.devstack.synthetic import make_record
from aegis_pipeline.domain.cleaning import normalize_record
from aegis_pipeline.hot_path.store import PolicyStore
from aegis_pipeline.settings import Settings
from aegis_pipeline.stores import postgres
from aegis_pipeline.sync import source
from aegis_pipeline.sync.consistency import check_consistency, repair
from aegis_pipeline.sync.run import run_sync
from aegis_pipeline.sync.targets import open_target

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def another_run_holds(settings: Settings, target: str) -> AsyncIterator[None]:
    pool = await postgres.create_pool(settings)
    try:
        async with source.target_lock(pool, target, wait_seconds=5):
            yield
    finally:
        await pool.close()


async def test_a_sync_behind_another_run_of_its_target_is_busy_not_failed(stack: Settings) -> None:
    impatient = stack.model_copy(update={"sync_lock_wait_seconds": 1.0})
    source_name = f"busy_{uuid.uuid4().hex[:6]}"
    pool = await postgres.create_pool(stack)
    try:
        stored = await PolicyStore(pool).store_batch(
            [normalize_record(make_record(index, source=source_name)) for index in range(3)], lambda stored: [])
        await run_cold_path(stack, source=source_name)
        assert (await run_sync(stack, targets=["search"])).success
        watermark = await source.read_watermark(pool, "search")
    finally:
        await pool.close()
    lost = stored.stored[0].policy_id
    with open_target("search", stack) as search:  # a drift for the repair to fix: one document lost
        search.delete([lost])
        search.flush()
    async with another_run_holds(stack, "search"):
        report = await run_sync(impatient, targets=["search"])
        drifted = await check_consistency(impatient, targets=["search"])
        assert lost in drifted.targets["search"].drift.missing
        repaired = await repair(impatient, drifted)
    [result] = report.results
    assert (result.success, result.busy, result.error_code, result.upserted) == (True, True, None, 0)
    assert report.success
    assert repaired.success and repaired.busy == ["search"]
    assert repaired.fixed["search"] == {"missing": 0, "stale": 0, "orphaned": 0}  # nothing claimed fixed
    assert (await repair(stack)).fixed["search"]["missing"] >= 1  # free again: the next repair fixes it
    pool = await postgres.create_pool(stack)
    try:
        assert await source.read_watermark(pool, "search") == watermark  # the next run catches up from here
    finally:
        await pool.close()


async def test_a_sync_waits_for_a_run_that_ends_within_its_wait(stack: Settings) -> None:
    patient = stack.model_copy(update={"sync_lock_wait_seconds": 30.0})

    async def hold_for_two_seconds() -> None:
        async with another_run_holds(stack, "search"):
            await asyncio.sleep(2)

    holder = asyncio.create_task(hold_for_two_seconds())
    await asyncio.sleep(0.5)
    report = await run_sync(patient, targets=["search"])
    await holder
    [result] = report.results
    assert (result.success, result.busy) == (True, False), result
    assert result.duration_seconds >= 1.0  # it waited for the holder
