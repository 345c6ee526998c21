"""Incremental collection planned (collectors/incremental.py): what a run lists, and the checkpoint it leaves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from aegis_pipeline.collectors.definitions import SourceDefinition, parse_sources
from aegis_pipeline.collectors.incremental import (
    Checkpoint,
    ListingKind,
    ListingProgress,
    next_checkpoint,
    plan_listings,
)
from aegis_pipeline.common.errors import SourceConfigError

URL = "https://apis.example.kr/list"
NOW = datetime(2026, 12, 5, 0, 30, tzinfo=UTC)  # 09:30 on 5 December in Korea


def source(**extra: Any) -> SourceDefinition:
    entry = {
        "name": "listed", "kind": "json_api", "url": URL, "params": {"serviceKey": "k"}, "records_path": "data",
        "id_field": "id", "fields": {"title": {"path": "t"}, "content": {"path": "c"},
                                     "issuing_organization": {"value": "기관"}},
        "pagination": {"type": "page_number", "page_param": "pageNo", "size_param": "numOfRows",
                       "page_size": 100},
        **extra,
    }
    return parse_sources({"sources": [entry]}, {}).sources[0]


MSS_WINDOW = {"strategy": "date_window", "start_param": "startDate", "end_param": "endDate", "lookback_days": 3}
GOV24_WINDOW = {"strategy": "date_window", "start_param": "cond[수정일시::GTE]", "date_format": "%Y%m%d%H%M%S",
                "lookback_days": 1}


def test_a_source_without_incremental_lists_everything_every_run() -> None:
    [listing] = plan_listings(source(), Checkpoint(cursor="x"), NOW)
    assert listing.kind is ListingKind.ALL
    assert listing.first.params == {"serviceKey": "k", "pageNo": 1, "numOfRows": 100}


def test_the_first_date_window_run_asks_for_the_last_days_then_starts_the_full_listing() -> None:
    incremental, full = plan_listings(source(incremental=MSS_WINDOW, full_listing={"every_days": 7}), Checkpoint(),
                                      NOW)
    assert incremental.kind is ListingKind.INCREMENTAL
    assert incremental.first.params == {"serviceKey": "k", "startDate": "2026-12-02", "endDate": "2026-12-05",
                                        "pageNo": 1, "numOfRows": 100}
    assert full.kind is ListingKind.FULL
    assert full.first.params == {"serviceKey": "k", "pageNo": 1, "numOfRows": 100}


def test_the_window_starts_at_the_last_complete_run_less_the_look_back_in_korean_time() -> None:
    last_run = datetime(2026, 12, 4, 18, 0, tzinfo=UTC)  # 03:00 on 5 December in Korea
    checkpoint = Checkpoint(cursor=last_run.isoformat(), full_listing_completed_at=NOW - timedelta(days=1))
    [listing] = plan_listings(source(incremental=GOV24_WINDOW, full_listing={"every_days": 7}), checkpoint, NOW)
    assert listing.kind is ListingKind.INCREMENTAL
    assert listing.first.params["cond[수정일시::GTE]"] == "20261204030000"


def test_a_full_listing_in_progress_resumes_at_its_next_page() -> None:
    checkpoint = Checkpoint(cursor=NOW.isoformat(), full_listing_next_page=4,
                            full_listing_completed_at=NOW - timedelta(days=30))
    _incremental, full = plan_listings(source(incremental=MSS_WINDOW, full_listing={"every_days": 7}), checkpoint,
                                      NOW)
    assert full.first.params["pageNo"] == 5
    assert (full.first.index, full.first.records_before) == (4, 400)


def test_a_full_listing_is_due_again_after_its_every_days() -> None:
    defined = source(incremental=MSS_WINDOW, full_listing={"every_days": 7})
    done_six_days_ago = Checkpoint(cursor=NOW.isoformat(), full_listing_completed_at=NOW - timedelta(days=6))
    done_a_week_ago = Checkpoint(cursor=NOW.isoformat(), full_listing_completed_at=NOW - timedelta(days=7))
    assert [listing.kind for listing in plan_listings(defined, done_six_days_ago, NOW)] == [ListingKind.INCREMENTAL]
    assert [listing.kind for listing in plan_listings(defined, done_a_week_ago, NOW)] == [
        ListingKind.INCREMENTAL, ListingKind.FULL]


def test_stop_at_seen_never_listed_runs_the_full_listing_alone() -> None:
    defined = source(incremental={"strategy": "stop_at_seen"}, full_listing={"every_days": 1})
    [listing] = plan_listings(defined, Checkpoint(), NOW)
    assert listing.kind is ListingKind.FULL
    incremental, full = plan_listings(defined, Checkpoint(full_listing_next_page=3), NOW)
    assert incremental.stop_at_seen and incremental.first.params == {"serviceKey": "k", "pageNo": 1,
                                                                      "numOfRows": 100}
    assert full.first.params["pageNo"] == 4


def test_records_that_never_reached_the_store_make_the_run_list_everything() -> None:
    [listing] = plan_listings(source(incremental=MSS_WINDOW), Checkpoint(cursor=NOW.isoformat()), NOW,
                              read_everything=True)
    assert listing.kind is ListingKind.ALL and "startDate" not in listing.first.params


def test_the_window_moves_only_when_its_pass_completed() -> None:
    defined = source(incremental=MSS_WINDOW, full_listing={"every_days": 7})
    before = Checkpoint(cursor="2026-12-01T00:00:00+00:00", full_listing_completed_at=NOW - timedelta(days=1))
    stopped = next_checkpoint(defined, before, ListingProgress(), run_started_at=NOW, greatest_cursor_value=None)
    assert stopped == before
    completed = next_checkpoint(defined, before, ListingProgress(incremental_completed=True), run_started_at=NOW,
                                greatest_cursor_value=None)
    assert completed.cursor == NOW.isoformat()


def test_a_full_listing_keeps_its_next_page_until_it_reads_its_last() -> None:
    defined = source(incremental=MSS_WINDOW, full_listing={"every_days": 7})
    paused = next_checkpoint(defined, Checkpoint(), ListingProgress(full_listing_next_page=12), run_started_at=NOW,
                             greatest_cursor_value=None)
    assert (paused.full_listing_next_page, paused.full_listing_completed_at) == (12, None)
    done = next_checkpoint(defined, paused, ListingProgress(full_listing_completed=True), run_started_at=NOW,
                           greatest_cursor_value=None)
    assert (done.full_listing_next_page, done.full_listing_completed_at) == (None, NOW)


def test_a_complete_listing_is_dated_by_its_start_even_over_several_runs() -> None:
    """What the withdrawn sweep compares with (docs/lifecycle.md): the start of the last listing of everything that
    reached its last page; a listing stopped halfway completes none."""
    everything = source()
    partial = next_checkpoint(everything, Checkpoint(), ListingProgress(listing_of_everything_started=True),
                              run_started_at=NOW, greatest_cursor_value=None)
    assert (partial.listing_started_at, partial.last_complete_listing_at) == (NOW, None)
    complete = next_checkpoint(everything, partial, ListingProgress(listing_of_everything_started=True,
                                                                    listing_of_everything_completed=True),
                               run_started_at=NOW + timedelta(hours=6), greatest_cursor_value=None)
    assert (complete.listing_started_at, complete.last_complete_listing_at) == (None, NOW + timedelta(hours=6))

    weekly = source(incremental=MSS_WINDOW, full_listing={"every_days": 7})
    first_day = next_checkpoint(weekly, Checkpoint(), ListingProgress(listing_of_everything_started=True,
                                                                      full_listing_next_page=40),
                                run_started_at=NOW, greatest_cursor_value=None)
    next_day = NOW + timedelta(days=1)
    resumed = next_checkpoint(weekly, first_day, ListingProgress(full_listing_completed=True,
                                                                 listing_of_everything_completed=True),
                              run_started_at=next_day, greatest_cursor_value=None)
    assert (resumed.last_complete_listing_at, resumed.full_listing_completed_at) == (NOW, next_day)
    incremental_only = next_checkpoint(weekly, resumed, ListingProgress(incremental_completed=True),
                                       run_started_at=next_day + timedelta(hours=6), greatest_cursor_value=None)
    assert incremental_only.last_complete_listing_at == NOW


def test_the_cursor_strategy_keeps_the_greatest_value_seen() -> None:
    defined = source(incremental={"cursor_field": "modified", "request_param": "since"})
    after = next_checkpoint(defined, Checkpoint(cursor="20261201"), ListingProgress(incremental_completed=True),
                            run_started_at=NOW, greatest_cursor_value="20261204")
    assert after.cursor == "20261204"
    [listing] = plan_listings(defined, after, NOW)
    assert listing.first.params["since"] == "20261204"


@pytest.mark.parametrize(("extra", "message"), [
    ({"full_listing": {"every_days": 7}}, "`full_listing` needs a date_window or stop_at_seen"),
    ({"incremental": {"cursor_field": "m"}, "full_listing": {"every_days": 7}}, "a cursor cannot tell"),
    ({"incremental": MSS_WINDOW, "full_listing": {"every_days": 7}, "pagination": {"type": "none"}},
     "it needs page_number or offset pagination"),
    ({"incremental": {"strategy": "yesterday"}}, "incremental"),
    ({"daily_request_budget": 0}, "daily_request_budget"),
])
def test_impossible_incremental_settings_are_refused_naming_the_source(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(SourceConfigError) as refused:
        source(**extra)
    assert 'source "listed"' in str(refused.value) and message in str(refused.value)
