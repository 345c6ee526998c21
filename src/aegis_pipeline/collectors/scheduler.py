"""`aegis-pipeline scheduler`: APScheduler runs each source on its schedule (design §4.1.2: APIs and feeds every
COLLECTION_INTERVAL_HOURS, web boards daily at 00:00 KST, overridable per source).

Several replicas may run the scheduler. Interval triggers are anchored to a fixed instant, so every replica
computes the same fire times; before collecting, a replica claims the source's current time slot in Redis
(`SET NX` with the slot's length as expiry) and only the replica that claimed it collects. Overlapping runs of
one source inside a process are prevented by `max_instances=1`.

Stopping (SIGTERM on a deploy) starts no new run and lets the runs in progress finish for up to
`stop_grace_seconds`: a run cut off midway would have made its requests without publishing or counting them.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

import redis.asyncio as redis
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from aegis_pipeline.collectors.definitions import SourceDefinition
from aegis_pipeline.collectors.run import CollectorContext, SourceResult, collect_source
from aegis_pipeline.common.errors import StoreUnavailableError
from aegis_pipeline.common.logging import get_logger
from aegis_pipeline.domain.korean_time import KST
from aegis_pipeline.stores import cache

log = get_logger(__name__)

# Every replica's interval schedule counts from here, so they agree on fire times.
SCHEDULE_ANCHOR = datetime(2026, 1, 1, tzinfo=KST)
CRON_SLOT_SECONDS = 3600  # a cron job's runs are claimed per hour
# Below Kubernetes' default termination grace period (30 s), so a run ends before the pod is killed.
STOP_GRACE_SECONDS = 20.0


class CollectionScheduler:
    def __init__(self, context: CollectorContext, sources: list[SourceDefinition], lock_client: redis.Redis, *,
                 stop_grace_seconds: float = STOP_GRACE_SECONDS) -> None:
        self._context = context
        self._sources = {source.name: source for source in sources}
        self._locks = lock_client
        self._stop_grace_seconds = stop_grace_seconds
        self._in_progress: set[asyncio.Task[SourceResult | None]] = set()
        self.scheduler = AsyncIOScheduler(timezone=KST)
        self.runs: list[SourceResult] = []

    def add_jobs(self) -> None:
        settings = self._context.settings
        for source in self._sources.values():
            schedule = source.effective_schedule(api_interval_hours=settings.collection_interval_hours)
            if schedule.interval_hours is not None:
                trigger = IntervalTrigger(seconds=schedule.interval_hours * 3600, start_date=SCHEDULE_ANCHOR)
                slot_seconds = max(1, int(schedule.interval_hours * 3600))
            else:
                trigger = CronTrigger.from_crontab(schedule.cron or "", timezone=KST)
                slot_seconds = CRON_SLOT_SECONDS
            self.scheduler.add_job(
                self.run_source, trigger, args=[source.name, slot_seconds], id=f"collect:{source.name}",
                name=f"collect {source.name}", max_instances=1, coalesce=True, misfire_grace_time=300,
                replace_existing=True,
            )
            log.info("collection_scheduled", source=source.name, trigger=str(trigger))

    async def claim_slot(self, source_name: str, slot_seconds: int) -> bool:
        """True for exactly one replica per source and time slot."""
        slot = int(time.time() // slot_seconds)
        key = f"aegis:collect:claim:{source_name}:{slot}"
        with cache.translate_errors("claim collection slot"):
            return bool(await self._locks.set(key, b"1", nx=True, ex=slot_seconds))

    @property
    def runs_in_progress(self) -> int:
        return len(self._in_progress)

    async def run_source(self, source_name: str, slot_seconds: int) -> SourceResult | None:
        """Collect the source if this replica claims its slot (APScheduler's job)."""
        # Its own task, shielded: APScheduler's shutdown cancels the job, but the run goes on until stopping has
        # waited for it (see `_finish_runs_in_progress`).
        run = asyncio.create_task(self._claim_and_collect(source_name, slot_seconds))
        self._in_progress.add(run)
        run.add_done_callback(self._in_progress.discard)
        return await asyncio.shield(run)

    async def _claim_and_collect(self, source_name: str, slot_seconds: int) -> SourceResult | None:
        try:
            claimed = await self.claim_slot(source_name, slot_seconds)
        except StoreUnavailableError as error:
            # Without Redis no replica can prove it is the only one: skip rather than risk a double run.
            log.warning("collection_skipped_no_lock", source=source_name, reason=str(error))
            return None
        if not claimed:
            log.info("collection_claimed_elsewhere", source=source_name)
            return None
        result = await collect_source(self._sources[source_name], self._context)
        self.runs.append(result)
        return result

    async def serve(self, stop: asyncio.Event) -> None:
        self.add_jobs()
        self.scheduler.start()
        log.info("collection_scheduler_started", sources=len(self._sources))
        try:
            await stop.wait()
        finally:
            self.scheduler.shutdown(wait=False)  # no new runs (its wait=True would block the event loop)
            await self._finish_runs_in_progress()
            log.info("collection_scheduler_stopped")

    async def _finish_runs_in_progress(self) -> None:
        if not self._in_progress:
            return
        running = set(self._in_progress)
        log.info("collection_scheduler_finishing_runs", runs=len(running))
        _, unfinished = await asyncio.wait(running, timeout=self._stop_grace_seconds)
        for task in unfinished:  # past the grace period: stop now; the next run collects it again
            task.cancel()
        if unfinished:
            log.warning("collection_runs_cancelled_at_stop", runs=len(unfinished))
            await asyncio.wait(unfinished)
