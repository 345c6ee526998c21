"""One run of a source through the collector's own reading code, without Kafka, PostgreSQL or Redis: what the
contract tests of the shipped sources file and the request benchmark (bench/source_requests.py) need.

`read_source` plans the run's listings from a checkpoint (`collectors.incremental.plan_listings`) and reads them
with `collectors.run._read_source`: the same pagination, HTTP client, envelope checks, request count and board
crawler as `collect_source`. What differs is only where pages go: each record is sanitised and mapped
(`build_record`) and kept in a `Collected` instead of published, and "already published, unchanged" is the
caller's `seen` set instead of the content hashes in PostgreSQL. The rate limiter does not wait: politeness is
not what these callers measure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import httpx

from aegis_pipeline.collectors.definitions import SourceDefinition
from aegis_pipeline.collectors.incremental import Checkpoint, ListingProgress, next_checkpoint, plan_listings
from aegis_pipeline.collectors.mapping import build_record, external_id_of, without_personal_identifiers
from aegis_pipeline.collectors.parsing.records import sanitise_record
from aegis_pipeline.collectors.rate_limit import RequestBudget
from aegis_pipeline.collectors.run import CollectorContext, SourceResult, _read_source
from aegis_pipeline.common.errors import InvalidDataError
from aegis_pipeline.domain.identifiers import DEVELOPMENT_KEY
from aegis_pipeline.domain.records import RawPolicyData

USER_AGENT = "AegisSourceReading/1.0"


@dataclass
class Collected:
    """What one run of a source gave: valid records and refusals by id, every id fetched in order; the run's
    result (its requests, listings) and the checkpoint the next run starts from."""

    records: dict[str, RawPolicyData] = field(default_factory=dict)
    refused: dict[str, InvalidDataError] = field(default_factory=dict)
    fetched_ids: list[str] = field(default_factory=list)
    result: SourceResult | None = None
    next_checkpoint: Checkpoint | None = None


class _NoWait:
    """The rate limiter's interface without the waiting."""

    async def acquire(self, source: str, requests_per_second: float) -> None:
        return None


class _KeepingPageTaker:
    """Takes pages as the collector's page taker does (sanitised, credentials redacted, mapped and validated),
    keeping the records instead of publishing them. A record in `seen` counts as published and unchanged, which
    is what stops a `stop_at_seen` listing."""

    def __init__(self, source: SourceDefinition, collected: Collected, seen: frozenset[str]) -> None:
        self._source, self._collected, self._seen = source, collected, seen
        self._secrets = source.secret_values()

    async def take(self, raw_page: list[dict[str, Any]]) -> tuple[int, int]:
        valid = changed = 0
        for raw in raw_page:
            # Personal data in the id or a field name hashed, as the collector does (the embedded stack's key).
            raw = without_personal_identifiers(sanitise_record(raw, self._secrets), self._source,
                                               DEVELOPMENT_KEY.encode("utf-8"))
            external_id = external_id_of(raw, self._source) or "?"
            self._collected.fetched_ids.append(external_id)
            try:
                self._collected.records[external_id] = build_record(raw, self._source, datetime.now(UTC))
            except InvalidDataError as error:
                self._collected.refused[external_id] = error
                continue
            valid += 1
            changed += external_id not in self._seen
        return valid, changed


async def read_source(source: SourceDefinition, checkpoint: Checkpoint | None = None, *,
                      seen: frozenset[str] = frozenset(), budget: RequestBudget | None = None,
                      now: datetime | None = None) -> Collected:
    """Run `source` once: the whole listing when `checkpoint` is None (a run that lists everything), else the
    listings a run from `checkpoint` plans at `now`. The source's errors propagate as `collect_source` sees them;
    `Collected.result.requests` counts what was sent (a board's: robots.txt, list and detail pages; a board is read
    from its first page, and no crawl position is kept)."""
    collected = Collected()
    now = now or datetime.now(UTC)
    settings = SimpleNamespace(collector_user_agent=USER_AGENT, max_response_bytes=10_000_000,
                               collector_circuit_failure_threshold=5, collector_circuit_recovery_seconds=60.0)
    progress, result = ListingProgress(), SourceResult(source.name)
    listings = plan_listings(source, checkpoint or Checkpoint(), now, read_everything=checkpoint is None)
    result.listings = [listing.kind.value for listing in listings]
    async with httpx.AsyncClient(headers={"User-Agent": USER_AGENT}, follow_redirects=True) as http:
        context = CollectorContext(settings=settings, http=http, limiter=_NoWait(),  # type: ignore[arg-type]
                                   producer=None, dead_letters=None, state=None,  # type: ignore[arg-type]
                                   budget=budget or RequestBudget(None))
        await _read_source(source, context, listings, _KeepingPageTaker(source, collected, seen),  # type: ignore[arg-type]
                           progress, result)
    collected.result = result
    collected.next_checkpoint = next_checkpoint(source, checkpoint or Checkpoint(), progress, run_started_at=now,
                                                greatest_cursor_value=None)
    return collected
