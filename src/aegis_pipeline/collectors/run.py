"""One collection run: every selected source fetched concurrently (at most MAX_CONCURRENT_COLLECTIONS at once),
each isolated from the others' failures.

Per source: what to list comes from `collectors.incremental` (everything, or only what is new or changed, plus a
full listing when due, within the source's daily request budget). Pages are fetched and parsed one at a time, and
each page's records are done before the next page is asked for (a web board's list pages too, its crawl position
saved page by page so that a stopped crawl resumes there: `_read_board`): each record mapped and validated; invalid
records go to the
dead-letter queue (DP_1004, or DP_2003 for an id repeated within the run), and so does a response refused as a
whole (not JSON/XML, larger than MAX_RESPONSE_BYTES: DP_1004, its start kept as text; the source run fails and
the next run fetches it again). A URL the source's egress policy refuses (`collectors.egress`: a redirect off its
origin, a private or metadata address) fails the source run with DP_1001 and `collector_egress_refused_total`,
nothing of it read; a run past its `run_deadline_seconds` stops with DP_1001, keeping what it had published.
Before mapping, every record is sanitised (lone surrogates and control characters
removed) and the source's own credentials are redacted from it, so no service key a source echoes back reaches
the raw topic, the store, events or the dead-letter queue; and personal data in its id or a field name is replaced
by a keyed hash (`mapping.without_personal_identifiers`, README "Personal data"), so that the record's identity
(`external_id`, the Kafka key, dead letters' `record_key`, logs) never carries it. A record larger than
MAX_RECORD_BYTES as JSON is refused (DP_1004). Records whose content hash is
already known are skipped as unchanged; the rest are published to the raw topic keyed `source:external_id`
(the record as JSON, no headers: the hot path trusts nothing but the record itself), and only after the broker
acknowledged them are their hashes remembered. A crash in between republishes
(duplicates are harmless downstream: the hot path upsert is idempotent) but never loses a record.

An acknowledgement is not storage: a broker that loses its data (the embedded broker keeps everything in memory)
loses records the hot path had not stored yet. So the hash remembered is the one the hot path stores beside
the version it made of the record (`domain.hashing.published_hash`, of the validated record as published, before
cleaning; `policies.published_hash`), and a record published more than COLLECTOR_REPUBLISH_GRACE_SECONDS ago
whose version is still not in `policies` is published again by the next run (for an incremental source, that
run lists everything, since the record may lie behind its filter). The raw topic is created before publishing
when it is missing (a broker that lost its data also lost its topics). When PostgreSQL is unavailable the source
run fails cleanly and the next run does it again; nothing is remembered that was not published.

Collectors do not clean records (no masking, no normalisation, no canonical regions): that happens once, in the
hot path (`domain.cleaning`). The raw topic is the trust boundary: whatever is published there, by a collector
or any other producer, passes the hot path before it is stored, and the hot path is the last stop before
storage. Collectors only need to know whether a record changed, and the hash of the record as published says it.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from circuitbreaker import CircuitBreaker

from aegis_pipeline.collectors import egress
from aegis_pipeline.collectors.definitions import CursorIncremental, PageRequest, SourceDefinition, SourceKind
from aegis_pipeline.collectors.extract import RefusedResponseError, make_page_check, parse_page
from aegis_pipeline.collectors.http import SourceHttpClient, new_breaker
from aegis_pipeline.collectors.incremental import (
    Checkpoint,
    Listing,
    ListingKind,
    ListingProgress,
    next_checkpoint,
    plan_listings,
)
from aegis_pipeline.collectors.mapping import build_record, external_id_of, without_personal_identifiers
from aegis_pipeline.collectors.parsing.records import dig, sanitise_record
from aegis_pipeline.collectors.rate_limit import DailyBudgetSpent, RateLimiter, RequestBudget
from aegis_pipeline.collectors.state import CollectorState
from aegis_pipeline.common import metrics
from aegis_pipeline.common.errors import (
    CircuitOpenError,
    EgressRefusedError,
    ErrorCode,
    InvalidDataError,
    PipelineError,
    ScrapingBlockedError,
    SourceDeadlineError,
    SourceUnavailableError,
)
from aegis_pipeline.common.logging import get_logger
from aegis_pipeline.common.progress import Progress, progress
from aegis_pipeline.common.redaction import redact, secret_spellings
from aegis_pipeline.domain.hashing import published_hash
from aegis_pipeline.domain.records import RawPolicyData
from aegis_pipeline.settings import Settings
from aegis_pipeline.stores import cache, kafka, postgres
from aegis_pipeline.stores.dead_letters import DeadLetter, DeadLetterQueue

log = get_logger(__name__)
# How long past its run deadline a source's work that does not stop by itself (a board's crawl, a stalled store)
# is left before it is cancelled; requests stop at the deadline itself.
RUN_DEADLINE_GRACE_SECONDS = 5.0


@dataclass
class SourceResult:
    source: str
    # ok | failed | circuit_open | budget_spent (stopped cleanly: the source's daily request budget is spent)
    status: str = "ok"
    fetched: int = 0
    published: int = 0
    republished: int = 0  # of `published`: records published before that never reached the store
    unchanged: int = 0
    invalid: int = 0
    failed: int = 0
    error: str | None = None
    error_code: str | None = None
    seconds: float = 0.0
    requests: int = 0  # sent to the source, retries included (boards: robots.txt, list and detail pages)
    listings: list[str] = field(default_factory=list)  # what the run listed: all, or incremental and/or full
    full_listing_next_page: int | None = None  # where a full listing in progress resumes next run
    board_next_page: int | None = None  # a board: the list page its crawl resumes at next run (None: its first)

    @property
    def completed(self) -> bool:
        """The run did what it could: all of it, or up to the daily request budget (the next day goes on)."""
        return self.status in ("ok", "budget_spent")

    def counts(self) -> dict[str, int]:
        return {key: value for key, value in asdict(self).items()
                if isinstance(value, int) and key not in ("full_listing_next_page", "board_next_page")}


@dataclass
class CollectorContext:
    """Connections and per-source state shared by runs (the scheduler keeps one for its lifetime, so circuit
    breakers remember failures across runs)."""

    settings: Settings
    http: httpx.AsyncClient
    limiter: RateLimiter
    producer: AIOKafkaProducer
    dead_letters: DeadLetterQueue
    state: CollectorState
    budget: RequestBudget
    breakers: dict[str, CircuitBreaker] = field(default_factory=dict)

    def breaker(self, source: str) -> CircuitBreaker:
        if source not in self.breakers:
            self.breakers[source] = new_breaker(
                source,
                failure_threshold=self.settings.collector_circuit_failure_threshold,
                recovery_seconds=self.settings.collector_circuit_recovery_seconds,
            )
        return self.breakers[source]


@contextlib.asynccontextmanager
async def open_context(settings: Settings) -> AsyncIterator[CollectorContext]:
    pool = await postgres.create_pool(settings)
    redis_client = cache.create_client(settings)
    producer = kafka.create_producer(settings)
    # No redirects followed by httpx: SourceHttpClient follows them, each hop checked (collectors.egress).
    http = egress.new_http_client(user_agent=settings.collector_user_agent,
                                  max_connections=settings.max_concurrent_collections * 4)
    try:
        with kafka.translate_errors("start producer"):
            await producer.start()
        yield CollectorContext(
            settings=settings, http=http, limiter=RateLimiter(redis_client), budget=RequestBudget(redis_client),
            producer=producer,
            dead_letters=DeadLetterQueue(pool, producer, settings.kafka_topic_dlq),
            state=CollectorState(pool),
        )
    finally:
        await http.aclose()
        await producer.stop()
        await redis_client.aclose()
        await pool.close()


class _PageTaker:
    """Takes a source's records page by page, as a run reads them: sanitised, validated (invalid ones to the
    dead-letter queue), unchanged ones skipped, the rest published and their hashes remembered. A page is done
    before the next is read, so a run stopped halfway (its daily budget, a failure) keeps what it published."""

    def __init__(self, source: SourceDefinition, context: CollectorContext, result: SourceResult,
                 run_at: datetime, unstored: set[str]) -> None:
        self._source = source
        self._context = context
        self._result = result
        self._run_at = run_at
        self._unstored = unstored
        self._secrets = source.secret_values()
        self._identifier_key = context.settings.identifier_hash_key.get_secret_value().encode("utf-8")
        self._seen_ids: set[str] = set()  # within the run: a repeated id is a duplicate, whatever its page
        self.greatest_cursor_value: str | None = None

    async def take(self, raw_page: list[dict[str, Any]]) -> tuple[int, int]:
        """Handle one page's records; returns how many were valid and how many of those new or changed."""
        source, context, result = self._source, self._context, self._result
        # Personal data in an id or a field name is hashed first: every id, key and letter below carries the hash.
        raw_records = [without_personal_identifiers(sanitise_record(raw, self._secrets), source, self._identifier_key)
                       for raw in raw_page]
        result.fetched += len(raw_records)
        valid, letters = _validate(raw_records, source, self._run_at, seen_ids=self._seen_ids,
                                   max_record_bytes=context.settings.max_record_bytes)
        result.invalid += len(letters)
        await context.dead_letters.send(letters)
        known = await context.state.known_hashes(source.name, [r.collection_metadata.external_id for r in valid])
        hashed = [(record, published_hash(record)) for record in valid]  # as published; the hot path stores it too
        changed = [(record, digest) for record, digest in hashed
                   if known.get(record.collection_metadata.external_id) != digest
                   or record.collection_metadata.external_id in self._unstored]
        result.unchanged += len(valid) - len(changed)
        result.republished += sum(1 for record, digest in changed
                                  if known.get(record.collection_metadata.external_id) == digest)
        await _publish(changed, context)
        result.published += len(changed)
        await context.state.remember_published(
            source.name, {record.collection_metadata.external_id: digest for record, digest in changed}
        )
        # Listed now, changed or not, valid or not: a complete listing's sweep keeps it (docs/lifecycle.md).
        listed = [external_id for raw in raw_records if (external_id := external_id_of(raw, source)) is not None]
        await context.state.mark_listed(source.name, listed, self._run_at)
        self._note_cursor_values(valid)
        return len(valid), len(changed)

    def _note_cursor_values(self, records: list[RawPolicyData]) -> None:
        if not isinstance(self._source.incremental, CursorIncremental):
            return
        field_name = self._source.incremental.cursor_field
        values = [str(dig(record.raw_data, field_name) or "") for record in records]
        self.greatest_cursor_value = max(filter(None, [*values, self.greatest_cursor_value]), default=None)


async def _read_listing(listing: Listing, source: SourceDefinition, client: SourceHttpClient, taker: _PageTaker,
                        progress: ListingProgress) -> None:
    """Read one listing's pages in order, each handed to `taker` before the next is asked for. Stops at the last
    page (its pagination's rule), after `max_pages` pages (a full listing then resumes there next run), or for
    `stop_at_seen` after a page whose valid records were all published before; `progress` says how far it got."""
    check = make_page_check(source)
    request: PageRequest | None = listing.first
    pages_read = 0
    of_everything = listing.kind is ListingKind.ALL or listing.kind is ListingKind.FULL
    if of_everything and listing.first.index == 0:
        progress.listing_of_everything_started = True
    while request is not None:
        page = parse_page(await client.fetch_text(request.url, request.params, check), source)
        valid, changed = await taker.take(page.records)
        pages_read += 1
        following = source.pagination.next_request(request, page, max_pages=sys.maxsize)
        if of_everything:
            progress.listing_of_everything_completed = following is None
        if listing.kind is ListingKind.FULL:
            progress.full_listing_next_page = following.index if following else None
            progress.full_listing_completed = following is None
        if listing.stop_at_seen and valid and not changed:
            following = None  # newest first: what comes after this page was seen too
        if following is not None and pages_read >= source.max_pages:
            log.info("listing_paused", source=source.name, listing=listing.kind.value, pages=pages_read,
                     next_page=following.index)
            following = None
        request = following
    if listing.kind is not ListingKind.FULL:
        progress.incremental_completed = True


async def _read_board(source: SourceDefinition, context: CollectorContext, taker: _PageTaker, result: SourceResult,
                      *, deadline_at: float | None = None, checkpoint: Checkpoint | None = None) -> None:
    """A web board, crawled list page by list page (`collectors.html_board`): each page's posts are taken (published,
    hashes remembered) before the crawl goes on, then the page after it is saved as the board's position
    (`board_next_page`, migration 0015), so a run stopped by anything (SIGTERM, SIGKILL, the run's deadline,
    `html.max_rows_per_run`, the daily budget, an open circuit) keeps the pages it finished and the next run resumes
    at the page where it stopped. A crawl that reached its end, or ended at a page that failed, leaves no position:
    the next run starts at the first page. So does a run whose resumed page fails as its first page (a page broken
    for good must not hold the crawl while new posts arrive on page 1). Requests go through the source's circuit
    breaker, daily budget, rate limit and egress policy, as an API's do. A board never completes a listing of
    everything (docs/lifecycle.md): it reads its newest `max_pages` pages, over one run or several."""
    from aegis_pipeline.collectors.html_board import BoardPage, crawl_board, first_list_page

    assert source.html is not None
    resume_at = checkpoint.board_next_page if checkpoint is not None else None
    resumed = resume_at is not None and first_list_page(source, resume_at) == resume_at
    saved, result.board_next_page = resume_at, resume_at

    async def save_position(next_page: int | None) -> None:
        nonlocal saved
        if next_page != saved and checkpoint is not None:
            await context.state.save_board_position(source.name, next_page, run_at=datetime.now(UTC))
            saved = next_page
        result.board_next_page = next_page

    async def take_page(page: BoardPage) -> None:
        if page.records:
            await taker.take([{**record.fields, "id": record.external_id, "url": record.detail_url}
                              for record in page.records])
        await save_position(page.next_page)

    async def before_request() -> None:
        await context.budget.spend(source.name, source.daily_request_budget)
        await context.limiter.acquire(source.name, source.rate_limit.requests_per_second)
        result.requests += 1

    try:
        crawl = await crawl_board(
            source, user_agent=context.settings.collector_user_agent, before_request=before_request,
            max_response_bytes=source.max_response_bytes or context.settings.max_response_bytes,
            take_page=take_page, resume_at=resume_at, max_rows=source.html.max_rows_per_run,
            breaker=context.breaker(source.name), egress=egress.policy_for(source), deadline_at=deadline_at,
        )
    except (SourceUnavailableError, ScrapingBlockedError):
        if resumed:
            with contextlib.suppress(PipelineError):  # the page's failure is the one to report
                await save_position(None)
        raise
    for url in crawl.blocked_by_robots:
        log.info("robots_disallowed", source=source.name, url=url)
    spellings = secret_spellings(source.secret_values())
    for problem in crawl.errors:  # read again when the crawl next passes its list page (its hash was not remembered)
        log.warning("board_page_failed", source=source.name, reason=redact(problem, spellings))
    await save_position(crawl.next_page)  # a later list page failed: the crawl ended there
    if crawl.stopped_by == "max_rows":
        log.info("board_paused", source=source.name, posts=crawl.posts, max_rows_per_run=source.html.max_rows_per_run,
                 next_page=crawl.next_page)


async def _read_source(source: SourceDefinition, context: CollectorContext, listings: list[Listing],
                       taker: _PageTaker, progress: ListingProgress, result: SourceResult, *,
                       deadline_at: float | None = None, checkpoint: Checkpoint | None = None) -> None:
    """Read the run's listings (a board: its crawl, resumed where `checkpoint` says and its position kept there;
    without a checkpoint, a one-off reading, from its first page, keeping none)."""
    if source.kind is SourceKind.HTML:
        await _read_board(source, context, taker, result, deadline_at=deadline_at, checkpoint=checkpoint)
        progress.incremental_completed = True
        return
    client = SourceHttpClient(source, context.http, context.limiter, context.breaker(source.name),
                              max_response_bytes=context.settings.max_response_bytes, budget=context.budget,
                              deadline_at=deadline_at)
    try:
        for listing in listings:
            await _read_listing(listing, source, client, taker, progress)
    finally:
        result.requests = client.requests_sent


async def collect_source(source: SourceDefinition, context: CollectorContext) -> SourceResult:
    result = SourceResult(source=source.name)
    started = time.monotonic()
    run_at = datetime.now(UTC)
    secrets = source.secret_values()
    listed = ListingProgress()
    checkpoint: Checkpoint | None = None
    taker: _PageTaker | None = None
    hard_stop: asyncio.Timeout | None = None
    try:
        unstored = await context.state.unstored(
            source.name, grace_seconds=context.settings.collector_republish_grace_seconds
        )
        checkpoint = await context.state.checkpoint(source.name)
        # A record that never reached the store may lie behind the incremental filter: then this run reads all.
        listings = plan_listings(source, checkpoint, run_at, read_everything=bool(unstored))
        result.listings = [listing.kind.value for listing in listings]
        taker = _PageTaker(source, context, result, run_at, unstored)
        # Requests stop at the run's deadline themselves (SourceHttpClient: SourceDeadlineError); whatever still runs
        # RUN_DEADLINE_GRACE_SECONDS later (a board's crawl, a stalled store) is cancelled.
        deadline_at = started + source.run_deadline_seconds
        async with asyncio.timeout(deadline_at + RUN_DEADLINE_GRACE_SECONDS - time.monotonic()) as hard_stop:
            await _read_source(source, context, listings, taker, listed, result, deadline_at=deadline_at,
                               checkpoint=checkpoint)
    except DailyBudgetSpent as stop:  # not a failure: what was read is kept, the next day's runs go on
        result.status, result.error = "budget_spent", str(stop)
    except RefusedResponseError as error:
        spellings = secret_spellings(secrets)
        await context.dead_letters.send([DeadLetter.from_error(
            "collect", error, source_system=source.name, payload_text=redact(error.body_excerpt, spellings),
        )])
        result.status, result.failed, result.error, result.error_code = "failed", 1, str(error), error.code
    except CircuitOpenError as error:
        result.status, result.failed, result.error, result.error_code = "circuit_open", 1, str(error), error.code
    except EgressRefusedError as error:  # nothing of the refused URL was read, stored or published
        metrics.collector_egress_refused_total.labels(source=source.name, reason=error.reason).inc()
        result.status, result.failed, result.error, result.error_code = "failed", 1, str(error), error.code
    except (SourceDeadlineError, TimeoutError) as error:  # what was published before it stays published
        if isinstance(error, TimeoutError) and (hard_stop is None or not hard_stop.expired()):
            raise
        stopped = error if isinstance(error, SourceDeadlineError) else SourceDeadlineError(
            f"{source.name}: run deadline of {source.run_deadline_seconds:g} s reached; stopped")
        metrics.collector_deadline_exceeded_total.labels(source=source.name, scope="run").inc()
        result.status, result.failed, result.error, result.error_code = "failed", 1, str(stopped), stopped.code
    except PipelineError as error:
        result.status, result.failed, result.error, result.error_code = "failed", 1, str(error), error.code
    result.seconds = time.monotonic() - started
    if result.error is not None:  # shown to users and logged: a URL in it must not carry the source's key
        result.error = redact(result.error, secret_spellings(secrets))
    if checkpoint is not None:
        following = next_checkpoint(source, checkpoint, listed, run_started_at=run_at,
                                    greatest_cursor_value=taker.greatest_cursor_value if taker else None)
        result.full_listing_next_page = following.full_listing_next_page
        try:
            await context.state.save_checkpoint(
                source.name, run_at=run_at, succeeded=result.completed,
                checkpoint=following, counts=result.counts(),
            )
        except PipelineError as error:  # the database is down: without a checkpoint, the next run does it again
            if result.status == "ok":
                result.status, result.failed, result.error, result.error_code = "failed", 1, str(error), error.code
    _observe(result)
    return result


def _validate(raw_records: list[dict[str, Any]], source: SourceDefinition, collected_at: datetime, *,
              seen_ids: set[str], max_record_bytes: int) -> tuple[list[RawPolicyData], list[DeadLetter]]:
    valid: list[RawPolicyData] = []
    letters: list[DeadLetter] = []
    seen = seen_ids
    for raw in raw_records:
        external_id = external_id_of(raw, source)
        record_key = f"{source.name}:{external_id}" if external_id else None
        if external_id is not None and external_id in seen:
            letters.append(DeadLetter(
                stage="collect", error_code=ErrorCode.DUPLICATE_DATA_DETECTED, source_system=source.name,
                record_key=record_key, payload=raw,
                error_message=f"{record_key} appears more than once in one run; the first occurrence was kept",
            ))
            continue
        try:
            record = build_record(raw, source, collected_at)
        except InvalidDataError as error:
            letters.append(DeadLetter.from_error("collect", error, source_system=source.name,
                                                 record_key=record_key, payload=raw))
            continue
        size = len(record.model_dump_json().encode("utf-8"))
        if size > max_record_bytes:  # the hot path would refuse it, and Kafka may not even take it
            letters.append(DeadLetter(
                stage="collect", error_code=ErrorCode.INVALID_DATA_FORMAT, source_system=source.name,
                record_key=record_key, payload=raw, error_details={"record_bytes": size},
                error_message=f"{record_key} is {size} bytes as JSON, more than MAX_RECORD_BYTES ({max_record_bytes})",
            ))
            continue
        if external_id is not None:
            seen.add(external_id)
        valid.append(record)
    return valid, letters


async def _publish(records: list[tuple[RawPolicyData, str]], context: CollectorContext) -> None:
    if not records:
        return
    settings = context.settings
    topic = settings.kafka_topic_raw_policies
    # A broker that lost its data acknowledges sends to a topic it no longer has, and keeps nothing of them.
    await kafka.ensure_topics(settings, [topic], partitions=settings.kafka_topic_partitions)
    with kafka.translate_errors("publish raw records"):
        deliveries = [
            await context.producer.send(
                topic,
                record.model_dump_json().encode("utf-8"),
                key=record.collection_metadata.record_key.encode("utf-8"),
            )
            for record, _ in records
        ]
        await asyncio.gather(*deliveries)  # every record acknowledged before its hash is remembered


def _observe(result: SourceResult) -> None:
    for status in ("published", "unchanged", "invalid"):
        count = getattr(result, status)
        if count:
            metrics.data_collection_total.labels(source=result.source, status=status).inc(count)
    if result.status != "ok":
        metrics.data_collection_total.labels(source=result.source, status=result.status).inc()
    metrics.data_collection_latency_seconds.labels(source=result.source).observe(result.seconds)
    log_method = log.info if result.status == "ok" else log.warning
    log_method("source_collected", **{key: value for key, value in asdict(result).items() if value is not None})


async def collect_once(context: CollectorContext, sources: list[SourceDefinition]) -> list[SourceResult]:
    """Collect every source once, at most MAX_CONCURRENT_COLLECTIONS at a time; a failing source never stops
    the others (its failure is in its result). Progress counts the sources done: a source's record count is
    known only once it has been fetched."""
    gate = asyncio.Semaphore(context.settings.max_concurrent_collections)

    async def guarded(source: SourceDefinition, shown: Progress) -> SourceResult:
        async with gate:
            try:
                result = await collect_source(source, context)
            except Exception as error:  # a bug or an unmapped failure in one source must not end the run
                log.exception("source_crashed", source=source.name)
                result = SourceResult(source=source.name, status="failed", failed=1,
                                      error=f"{type(error).__name__}: {error}")
        shown.advance()
        return result

    with progress("collect", total=len(sources), unit="sources",
                  log_every_seconds=context.settings.progress_log_seconds) as shown:
        return list(await asyncio.gather(*(guarded(source, shown) for source in sources)))
