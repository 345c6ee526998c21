"""The collection scheduler: the design's schedules, and two replicas never running one slot twice."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from aegis_pipeline.collectors.definitions import parse_sources
from aegis_pipeline.collectors.run import open_context
from aegis_pipeline.collectors.scheduler import KST, CollectionScheduler
from aegis_pipeline.devstack.sample_sources import SampleSources
from aegis_pipeline.settings import Settings
from aegis_pipeline.stores import cache

pytestmark = pytest.mark.integration


def sources_for(server: SampleSources, suffix: str, interval_hours: float | None) -> list:
    fields = {"title": {"path": "pblancNm", "parser": "text"}, "content": {"path": "bsnsSumryCn", "parser": "text"},
              "issuing_organization": {"path": "jrsdInsttNm"}}
    api = {"name": f"bizinfo_{suffix}", "kind": "json_api", "url": f"{server.base_url}/bizinfo/api",
           "records_path": "jsonArray", "id_field": "pblancId", "fields": fields,
           "rate_limit": {"requests_per_second": 100}}
    if interval_hours is not None:
        api["schedule"] = {"interval_hours": interval_hours}
    board = {"name": f"board_{suffix}", "kind": "html", "url": f"{server.base_url}/board/list.do",
             "id_field": "id", "fields": {"title": {"path": "t"}, "content": {"path": "c"},
                                          "issuing_organization": {"path": "o"}},
             "html": {"row_selector": "tr", "link_selector": "a", "detail_fields": {"t": "h1"}}}
    return parse_sources({"sources": [api, board]}, {}).sources


async def test_design_schedules_apis_every_6_hours_and_boards_daily_at_midnight(stack: Settings) -> None:
    with SampleSources() as server:
        sources = sources_for(server, uuid.uuid4().hex[:6], interval_hours=None)
    lock_client = cache.create_client(stack)
    async with open_context(stack) as context:
        scheduler = CollectionScheduler(context, sources, lock_client)
        scheduler.add_jobs()
        scheduler.scheduler.start(paused=True)
        jobs = {job.id.split(":")[1].split("_")[0]: job for job in scheduler.scheduler.get_jobs()}
        assert jobs["bizinfo"].trigger.interval.total_seconds() == 6 * 3600
        next_board_run = jobs["board"].next_run_time.astimezone(KST)
        assert (next_board_run.hour, next_board_run.minute) == (0, 0)
        scheduler.scheduler.shutdown(wait=False)
    await lock_client.aclose()


async def test_two_replicas_collect_each_slot_once(stack: Settings) -> None:
    suffix = uuid.uuid4().hex[:6]
    with SampleSources() as server:
        every_second = sources_for(server, suffix, interval_hours=1 / 3600)
        sources = [source for source in every_second if source.kind == "json_api"]
        lock_clients = [cache.create_client(stack) for _ in range(2)]
        async with open_context(stack) as first_context, open_context(stack) as second_context:
            replicas = [CollectionScheduler(first_context, sources, lock_clients[0]),
                        CollectionScheduler(second_context, sources, lock_clients[1])]
            stop = asyncio.Event()
            serving = [asyncio.create_task(replica.serve(stop)) for replica in replicas]
            await asyncio.sleep(4.5)
            stop.set()
            await asyncio.gather(*serving)
        for client in lock_clients:
            await client.aclose()
        list_requests = [request for request in server.requests if request.path == "/bizinfo/api"]

    runs = [result for replica in replicas for result in replica.runs]
    # A 1-second schedule over 4.5 s has 4 or 5 slots; two replicas each firing every slot would make 8-10 runs.
    assert 3 <= len(runs) <= 5
    # Every run is one request for the (unpaginated) list: nothing ran without being counted.
    assert len(list_requests) == len(runs)


def slow_source(server: SampleSources, suffix: str) -> list:
    api = {"name": f"slow_{suffix}", "kind": "json_api", "url": f"{server.base_url}/slow/api", "records_path": "data",
           "id_field": "id", "fields": {"title": {"path": "t"}, "content": {"path": "c"},
                                        "issuing_organization": {"path": "o"}},
           "schedule": {"interval_hours": 1 / 3600}, "timeout_seconds": 30}
    return parse_sources({"sources": [api]}, {}).sources


@pytest.mark.parametrize(("grace_seconds", "runs_finished"), [(10.0, 1), (0.5, 0)])
async def test_stopping_lets_a_run_in_progress_finish_within_the_grace_period(
        stack: Settings, grace_seconds: float, runs_finished: int) -> None:
    with SampleSources(slow_response_seconds=3) as server:
        lock_client = cache.create_client(stack)
        async with open_context(stack) as context:
            scheduler = CollectionScheduler(context, slow_source(server, uuid.uuid4().hex[:6]), lock_client,
                                            stop_grace_seconds=grace_seconds)
            stop = asyncio.Event()
            serving = asyncio.create_task(scheduler.serve(stop))
            for _ in range(100):  # the first run starts within a second
                if scheduler.runs_in_progress:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(1)  # the run now waits for the slow answer (3 s)
            stop.set()  # no second run may start
            await serving
        await lock_client.aclose()
        slow_requests = sum(request.path == "/slow/api" for request in server.requests)

    assert slow_requests <= 1  # no run started after the stop (a cancelled request may go unrecorded)
    assert len(scheduler.runs) == runs_finished
    assert scheduler.runs_in_progress == 0
