"""What one run of a source lists, and what it leaves for the next: incremental collection planned. Pure: no I/O.

A source without `incremental` lists everything every run (`ListingKind.ALL`). One with it lists, each run:

- the **incremental pass** (`INCREMENTAL`), only what is new or changed by the cheapest means its API offers:
  - `cursor`: the greatest `cursor_field` value seen, sent as `request_param`;
  - `date_window`: a filter from the last complete pass's start less `lookback_days` (중기부 `startDate`,
    정부24 `cond[수정일시::GTE]`), to now;
  - `stop_at_seen`: newest first, until a page brings nothing new or changed (the collector tells, page by page);
- then, when due, the **full listing** (`FULL`, `full_listing.every_days`), which reads what the incremental filter
  cannot see. It resumes at the page where the last run stopped it (its `max_pages`, or the daily request budget),
  so a catalogue larger than a day's quota is listed over several days.

A source that has never been listed in full and would list everything in its incremental pass anyway
(`stop_at_seen` with nothing seen yet) runs the full listing alone. When records were published but never stored
(a broker that lost its data), the run lists everything (`ALL`), since they may lie behind the filter.

`Checkpoint` is what the collector keeps per source (`collection_checkpoints`); `ListingProgress` what a run
learned, turned into the next checkpoint by `next_checkpoint`. A listing of everything (ALL, or FULL from its
first page to its last, over as many runs as it takes) that reaches its end is a *complete listing*: the cold path
archives as withdrawn what it did not show (mark and sweep, docs/lifecycle.md). A partial, failed or budget-stopped
listing never completes one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from aegis_pipeline.collectors.definitions import (
    CursorIncremental,
    DateWindowIncremental,
    PageRequest,
    SourceDefinition,
    StopAtSeenIncremental,
)
from aegis_pipeline.collectors.parsing.dates import KST


@dataclass(frozen=True)
class Checkpoint:
    """A source's collection state: `cursor` (the cursor strategy's greatest value; the date window's last
    complete pass start, ISO 8601), and where its full listing stands. `listing_started_at`: when the listing of
    everything in progress began (a full listing may take several runs); `last_complete_listing_at`: when the last
    listing that read the source to its end began. A record no listing has shown since then was withdrawn by its
    source (docs/lifecycle.md). `board_next_page`: a web board's list page where its crawl in progress resumes
    (None: the next crawl starts at the first page); written page by page by the collector as the crawl goes, never
    by `next_checkpoint`, and no listing of everything (a board's crawl never completes one)."""

    cursor: str | None = None
    full_listing_next_page: int | None = None
    full_listing_completed_at: datetime | None = None
    listing_started_at: datetime | None = None
    last_complete_listing_at: datetime | None = None
    board_next_page: int | None = None


class ListingKind(StrEnum):
    ALL = "all"
    INCREMENTAL = "incremental"
    FULL = "full"


@dataclass(frozen=True)
class Listing:
    """One pass over a source's pages from `first`; `stop_at_seen`: stop after a page with nothing new."""

    kind: ListingKind
    first: PageRequest
    stop_at_seen: bool = False


@dataclass
class ListingProgress:
    """What a run did of its listings, as it goes (a run that fails halfway keeps what it did)."""

    incremental_completed: bool = False
    full_listing_next_page: int | None = None  # the next page of the full listing, once it started
    full_listing_completed: bool = False
    # A listing of everything (ALL, or FULL from its first page) began in this run; one read to its last page.
    listing_of_everything_started: bool = False
    listing_of_everything_completed: bool = False


def full_listing_due(source: SourceDefinition, checkpoint: Checkpoint, now: datetime) -> bool:
    """A full listing is in progress, or none completed yet, or the last completed `every_days` ago."""
    if source.full_listing is None:
        return False
    if checkpoint.full_listing_next_page is not None or checkpoint.full_listing_completed_at is None:
        return True
    return now - checkpoint.full_listing_completed_at >= timedelta(days=source.full_listing.every_days)


def incremental_params(source: SourceDefinition, checkpoint: Checkpoint, now: datetime) -> dict[str, str | int]:
    """The source's query parameters with its incremental filter (none for `stop_at_seen`)."""
    strategy = source.incremental
    if isinstance(strategy, CursorIncremental):
        return source.query_params(checkpoint.cursor)
    params = source.query_params()
    if isinstance(strategy, DateWindowIncremental):
        since = datetime.fromisoformat(checkpoint.cursor) if checkpoint.cursor else now
        start = since - timedelta(days=strategy.lookback_days)
        params[strategy.start_param] = start.astimezone(KST).strftime(strategy.date_format)
        if strategy.end_param:
            params[strategy.end_param] = now.astimezone(KST).strftime(strategy.date_format)
    return params


def plan_listings(source: SourceDefinition, checkpoint: Checkpoint, now: datetime, *,
                  read_everything: bool = False) -> list[Listing]:
    """The listings of a run started at `now`, in order (module docstring)."""
    pagination = source.pagination
    if source.incremental is None or read_everything:
        return [Listing(ListingKind.ALL, pagination.first_request(source.url, source.query_params()))]
    stop_at_seen = isinstance(source.incremental, StopAtSeenIncremental)
    listings = []
    never_listed = checkpoint.full_listing_next_page is None and checkpoint.full_listing_completed_at is None
    if not (stop_at_seen and never_listed and source.full_listing is not None):
        listings.append(Listing(ListingKind.INCREMENTAL,
                                pagination.first_request(source.url, incremental_params(source, checkpoint, now)),
                                stop_at_seen=stop_at_seen))
    if full_listing_due(source, checkpoint, now):
        resume_at = checkpoint.full_listing_next_page or 0
        listings.append(Listing(ListingKind.FULL, pagination.request_at(source.url, source.query_params(), resume_at)))
    return listings


def next_checkpoint(source: SourceDefinition, checkpoint: Checkpoint, progress: ListingProgress, *,
                    run_started_at: datetime, greatest_cursor_value: str | None) -> Checkpoint:
    """The checkpoint after a run: the cursor moves only when its incremental pass completed (a pass stopped
    halfway may have left records behind the new cursor); the full listing resumes at its next page or, when it
    read its last page, is done as of this run."""
    cursor = checkpoint.cursor
    if progress.incremental_completed:
        if isinstance(source.incremental, DateWindowIncremental):
            cursor = run_started_at.isoformat()
        elif isinstance(source.incremental, CursorIncremental):
            cursor = max(filter(None, [cursor, greatest_cursor_value]), default=None)
    following = replace(checkpoint, cursor=cursor)
    listing_started_at = run_started_at if progress.listing_of_everything_started else checkpoint.listing_started_at
    if progress.listing_of_everything_completed:  # what it did not show is withdrawn: the cold path's sweep
        following = replace(following, listing_started_at=None, last_complete_listing_at=listing_started_at)
    else:
        following = replace(following, listing_started_at=listing_started_at)
    if progress.full_listing_completed:
        return replace(following, full_listing_next_page=None, full_listing_completed_at=run_started_at)
    if progress.full_listing_next_page is not None:
        return replace(following, full_listing_next_page=progress.full_listing_next_page)
    return following
