"""One cold-path run: `run_cold_path(settings)` scores what waits for a score, batch after batch, and reports.

A run is three steps, which the `policy_cold_path` DAG runs as tasks: `start_run` (open the run), `score_batches`
(one worker: claim and score batches until none is left; any number of workers at once, in any processes) and
`finish_run` (count what every worker decided). `run_cold_path` does all three in one process, for
`aegis-pipeline cold-path run` and the demo. Safe to run twice at once (batches are claimed with SKIP LOCKED) and
to retry with the same `run_id` (what a failed attempt committed stays; the retry goes on from there, and the
report counts the whole run).

A record whose assessment raises (a bug, not bad data: bad data is rejected with a reason) is dead-lettered
(stage `cold`, DP_4002) once, left `pending_validation` and skipped for the rest of the run; the next run tries
it again and resolves the letter when it succeeds.

Scores are tied to their rules (`cold_path.scoring_rules`): every score is stored with the version of the rules that
decided it. When the rules change (a weight, the threshold, a duplicate guard), the catalogue is rescored in the
background: once nothing waits for a score (records waiting always go first, orphaned duplicates included), each
worker scores again the records of older rules, all of one version per batch, the oldest version first (NULL,
scored before versions existed, before all), and stops taking such batches COLD_PATH_RESCORE_SECONDS after its
first one; the next run goes on where it stopped. Archived records are never rescored. A rescored record is
decided by the same claim, score and write as any other; its `data.quality_updated` event (and its audit row,
for a status change) is written when its status, total score or reasons changed, not when the new rules say the
same (its scoring is still stored, so after a broker loss the broker watch announces it like any recent scoring:
the same status, scores and reasons under a new event id, which a consumer applies as a no-op). `--rescore-all`
still scores every record again at once, with every event. Every run ends by counting the records still on older
rules: its report (`rescored`, `stale_remaining`) and the gauge `cold_path_stale_score_records{source}`.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aegis_pipeline.cold_path.lifecycle import apply_lifecycle, lifecycle_counts
from aegis_pipeline.cold_path.records import PolicyRecord
from aegis_pipeline.cold_path.scoring_rules import ScoringRules
from aegis_pipeline.cold_path.status import Assessment, Decision, assess, decide
from aegis_pipeline.cold_path.store import ColdPathStore, RunRow
from aegis_pipeline.common import metrics
from aegis_pipeline.common.errors import ErrorCode, PipelineError
from aegis_pipeline.common.logging import get_logger
from aegis_pipeline.common.progress import Progress, progress
from aegis_pipeline.schemas.events import EventType
from aegis_pipeline.schemas.fact_events import QualityScoring, quality_updated_envelope
from aegis_pipeline.settings import Settings
from aegis_pipeline.stores import postgres
from aegis_pipeline.stores.dead_letters import DeadLetter, DeadLetterQueue
from aegis_pipeline.stores.outbox import OutboxEvent

log = get_logger(__name__)

# Upper edges of the score distribution's buckets: [0, 0.5), [0.5, 0.6), ... [0.9, 1.0].
SCORE_BUCKETS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


class ColdPathError(PipelineError):
    """A cold-path run that could not finish; the DAG task fails with this code and Airflow retries it."""

    code = ErrorCode.COLD_PATH_FAILED


@dataclass(frozen=True)
class ColdPathReport:
    """What a run decided. `counts`: records per outcome (active, rejected, duplicate; duplicates are stored as
    rejected with DP_2003); `rejected_by_code`: DP code -> records; `score_distribution`: bucket label
    -> records; `mean_score_by_source`. `failed`: records dead-lettered; `requeued`: duplicates unlinked
    because their canonical record is gone, scored again in this run. `rules_version`: the rules this run scored
    under (`cold_path.scoring_rules`); `rescored`: records scored before under older rules that this run scored again
    (counted in `counts` too); `stale_remaining`: scored records still on older rules when the run ended (of its
    source, if it had one), which the next runs rescore."""

    run_id: str
    counts: dict[str, int]
    rejected_by_code: dict[str, int]
    score_distribution: dict[str, int]
    mean_score_by_source: dict[str, float]
    failed: int = 0
    requeued: int = 0
    batches: int = 0
    elapsed_seconds: float = 0.0
    parameters: dict[str, Any] = field(default_factory=dict)
    # The lifecycle step at the run's start (cold_path.lifecycle): archived "closed", "withdrawn"; "back".
    lifecycle: dict[str, int] = field(default_factory=dict)
    rules_version: str = ""
    rescored: int = 0
    stale_remaining: int = 0

    @property
    def processed(self) -> int:
        return sum(self.counts.values())


def bucket_label(value: float) -> str:
    lower = 0.0
    for upper in SCORE_BUCKETS:
        if value < upper or upper == SCORE_BUCKETS[-1]:
            return f"{lower:.1f}-{upper:.1f}"
        lower = upper
    raise AssertionError("unreachable")


def summarise(run_id: str, rows: list[RunRow]) -> tuple[dict[str, int], dict[str, int], dict[str, int],
                                                          dict[str, float]]:
    counts: Counter[str] = Counter({"active": 0, "rejected": 0, "duplicate": 0})
    codes: Counter[str] = Counter()
    distribution = {bucket_label(upper - 0.01): 0 for upper in SCORE_BUCKETS}
    by_source: dict[str, list[float]] = {}
    for row in rows:
        if row.status == "archived":  # the lifecycle's, at the run's start: ColdPathReport.lifecycle counts them
            continue
        outcome = "duplicate" if row.error_code == ErrorCode.DUPLICATE_DATA_DETECTED.value else row.status
        counts[outcome] += 1
        if row.error_code:
            codes[row.error_code] += 1
        if row.quality_score is not None:
            distribution[bucket_label(row.quality_score)] += 1
            by_source.setdefault(row.source_system, []).append(row.quality_score)
    means = {source: round(sum(scores) / len(scores), 4) for source, scores in sorted(by_source.items())}
    return dict(counts), dict(sorted(codes.items())), distribution, means


def _events(decisions: list[Decision], settings: Settings, scored_at: datetime) -> list[OutboxEvent]:
    """The `data.quality_updated` event of each decision, built from the values `ClaimedBatch.write` stores, by
    the function the broker watch builds it again with from the stored row (`schemas.fact_events`)."""
    producer = f"{settings.service_name}/{settings.service_version}"
    events = []
    for decision in decisions:
        scoring = QualityScoring(policy_id=decision.record.id, version=decision.record.version,
                                 status=decision.status.value, scores=decision.assessment.quality.as_event_data(),
                                 reasons=decision.stated_reasons, scored_at=scored_at)
        envelope = quality_updated_envelope(scoring, producer=producer)
        events.append(OutboxEvent(event_id=envelope["event_id"], event_type=EventType.DATA_QUALITY_UPDATED.value,
                                  topic=settings.kafka_topic_policy_events, key=decision.record.id,
                                  envelope=envelope))
    return events


def _observe(decisions: list[Decision], committed_at: datetime) -> None:
    for decision in decisions:
        metrics.pipeline_processing_total.labels(path="cold", status=decision.outcome).inc()
        # From the record's last change (what the hot path stored) to its score being committed.
        waited = (committed_at - decision.record.updated_at).total_seconds()
        metrics.pipeline_processing_latency_seconds.labels(path="cold").observe(max(0.0, waited))


@dataclass(frozen=True)
class WorkerReport:
    """What one worker of a run did: `batch_seconds` is the wall time of each batch it committed, in order;
    `rescored`: records of older rules it scored again."""

    failed: int
    requeued: int
    batches: int
    batch_seconds: tuple[float, ...]
    rescored: int = 0


async def run_cold_path(settings: Settings, *, limit: int | None = None, source: str | None = None,
                        rescore_all: bool = False, run_id: str | None = None) -> ColdPathReport:
    """Score up to `limit` records (default: all waiting) of `source` (default: all), in batches of
    COLD_PATH_BATCH_SIZE; `rescore_all`: every record that is not archived, not only new and changed ones.
    `run_id` names the run in `pipeline_metadata`, `processing_history`, `quality_metrics` and `audit_logs`
    (default: a new `cold-<uuid>`). Raises `ColdPathError` (DP_4002), or a retriable `PipelineError` when an
    engine was unavailable, after recording the failed run.

    One process does the whole run here; the `policy_cold_path` DAG runs the same three steps as tasks, with
    `score_batches` mapped over several workers."""
    run_id = run_id or f"cold-{uuid.uuid4()}"
    async with _store(settings) as store:
        rescore_since = await _start(store, settings, run_id, limit=limit, source=source, rescore_all=rescore_all)
        worker = await _score(store, settings, run_id, limit=limit, source=source, rescore_since=rescore_since)
        return await _finish(store, settings, run_id, [worker])


async def start_run(settings: Settings, run_id: str, *, limit: int | None, source: str | None,
                    rescore_all: bool) -> datetime | None:
    """Open the run's `pipeline_metadata` row (a retry with the same id reuses it), apply the lifecycle (archive
    what closed or was withdrawn, bring back what was listed again: `cold_path.lifecycle`) and file again any
    active record whose duplicate-detection keys are of an older scheme. Returns the `rescore_since` every worker
    of the run passes to `score_batches` (the database's clock now, for --rescore-all; else None)."""
    async with _store(settings) as store:
        return await _start(store, settings, run_id, limit=limit, source=source, rescore_all=rescore_all)


async def score_batches(settings: Settings, run_id: str, *, limit: int | None = None, source: str | None = None,
                        rescore_since: datetime | None = None) -> WorkerReport:
    """One worker of run `run_id`: claim and score batches until nothing is left (or `limit` records are done).
    Any number of workers may run this at once, in any processes: each batch is claimed with SKIP LOCKED."""
    async with _store(settings) as store:
        return await _score(store, settings, run_id, limit=limit, source=source, rescore_since=rescore_since)


async def finish_run(settings: Settings, run_id: str, workers: Sequence[WorkerReport]) -> ColdPathReport:
    """Close the run: its figures, counted from what every worker wrote under `run_id` (`processing_history`), so
    they are right whichever worker or retry decided a record; its time, since it started."""
    async with _store(settings) as store:
        return await _finish(store, settings, run_id, workers)


async def _start(store: ColdPathStore, settings: Settings, run_id: str, *, limit: int | None, source: str | None,
                 rescore_all: bool) -> datetime | None:
    rules = ScoringRules.from_settings(settings)
    await store.start_run(run_id, {"limit": limit, "source": source, "rescore_all": rescore_all,
                                   "rules_version": rules.version})
    try:
        await store.register_rules(rules.version, rules.parameters)
        await apply_lifecycle(store.pool, settings, run_id, now=await store.database_now(), source=source)
        refreshed = await store.refresh_fingerprints()
    except Exception as error:
        raise await _failed(store, run_id, error) from error
    if refreshed:
        log.info("cold_path_fingerprints_refreshed", run_id=run_id, records=refreshed)
    return await store.database_now() if rescore_all else None


async def _score(store: ColdPathStore, settings: Settings, run_id: str, *, limit: int | None, source: str | None,
                 rescore_since: datetime | None) -> WorkerReport:
    try:
        return await _run_batches(store, settings, run_id, limit=limit, source=source, rescore_since=rescore_since)
    except Exception as error:
        raise await _failed(store, run_id, error) from error


async def _finish(store: ColdPathStore, settings: Settings, run_id: str,
                  workers: Sequence[WorkerReport]) -> ColdPathReport:
    failed = sum(worker.failed for worker in workers)
    requeued = sum(worker.requeued for worker in workers)
    batches = sum(worker.batches for worker in workers)
    rows = await store.run_rows(run_id)
    counts, codes, distribution, means = summarise(run_id, rows)
    rules = ScoringRules.from_settings(settings)
    rescored = sum(row.rescored for row in rows)
    # What is left on older rules, over the whole catalogue (the gauge) and in this run's scope (the report).
    stale = await store.stale_by_source(rules.version)
    for source_name, records in stale.items():
        metrics.cold_path_stale_score_records.labels(source=source_name).set(records)
    parameters = await store.run_parameters(run_id)
    scope = parameters.get("source")
    stale_remaining = stale.get(scope, 0) if scope else sum(stale.values())
    lifecycle = (await lifecycle_counts(store.pool, run_id)).as_dict()
    for source_name, mean in means.items():
        metrics.data_quality_score.labels(source=source_name).set(mean)
    report = ColdPathReport(run_id=run_id, counts=counts, rejected_by_code=codes, score_distribution=distribution,
                            mean_score_by_source=means, failed=failed, requeued=requeued, batches=batches,
                            elapsed_seconds=round(await store.run_seconds(run_id), 3),
                            parameters=parameters, lifecycle=lifecycle, rules_version=rules.version,
                            rescored=rescored, stale_remaining=stale_remaining)
    # The whole run, from its start (over all its workers, whichever process finishes it): minutes, not seconds.
    metrics.pipeline_run_duration_seconds.labels(path="cold").observe(report.elapsed_seconds)
    await store.finish_run(run_id, status="succeeded", processed=report.processed, failed=failed, summary={
        "counts": counts, "rejected_by_code": codes, "score_distribution": distribution,
        "mean_score_by_source": means, "requeued": requeued, "batches": batches, "workers": len(workers),
        "elapsed_seconds": report.elapsed_seconds, "lifecycle": lifecycle, "rules_version": rules.version,
        "rescored": rescored, "stale_remaining": stale_remaining})
    log.info("cold_path_completed", run_id=run_id, **counts, failed=failed, requeued=requeued,
             workers=len(workers), elapsed_seconds=report.elapsed_seconds, rules_version=rules.version,
             rescored=rescored, stale_remaining=stale_remaining)
    return report


@contextlib.asynccontextmanager
async def _store(settings: Settings) -> AsyncIterator[ColdPathStore]:
    pool = await postgres.create_pool(settings)
    try:
        yield ColdPathStore(pool, settings)
    finally:
        await pool.close()


async def _failed(store: ColdPathStore, run_id: str, error: Exception) -> PipelineError:
    """Record the run as failed; the error to raise: a `PipelineError` as it is, anything else as DP_4002."""
    code = error.code.value if isinstance(error, PipelineError) else ErrorCode.COLD_PATH_FAILED.value
    log.error("cold_path_failed", run_id=run_id, error_code=code, error=str(error))
    try:
        await store.finish_run(run_id, status="failed", processed=0, failed=0,
                               summary={"error_code": code, "error": str(error)[:2000]})
    except PipelineError:
        pass  # the database is what failed: the run's row stays `running` until a retry finishes it
    if isinstance(error, PipelineError):
        return error
    return ColdPathError(f"cold path run {run_id} failed: {type(error).__name__}: {error}", run_id=run_id)


async def _run_batches(store: ColdPathStore, settings: Settings, run_id: str, *, limit: int | None,
                       source: str | None, rescore_since: datetime | None) -> WorkerReport:
    rules = ScoringRules.from_settings(settings)
    await store.register_rules(rules.version, rules.parameters)
    weights = rules.weights
    letters = DeadLetterQueue(store.pool, None, settings.kafka_topic_dlq)
    failed_ids: list[str] = []
    batch_seconds: list[float] = []
    remaining = limit
    requeued = rescored = 0
    # Background rescoring (module docstring): once nothing waits, batches of older rules, within the budget.
    # Not with --rescore-all, which takes every record anyway.
    background = rescore_since is None and settings.cold_path_rescore_seconds > 0
    older_rules = False                 # nothing waits any more: batches of older rules may be claimed
    rescoring_since: float | None = None  # when this worker claimed its first batch of older rules
    rescore_shown: Progress | None = None
    total = limit if limit is not None else await store.waiting(source, rescore_since)
    with contextlib.ExitStack() as blocks:
        shown = blocks.enter_context(progress("cold path", total=total,
                                              log_every_seconds=settings.progress_log_seconds))
        while remaining is None or remaining > 0:
            if older_rules and rescore_shown is None:
                stale = await _stale_count(store, rules.version, source)
                if not stale:
                    break
                log.info("cold_path_rescoring", run_id=run_id, rules_version=rules.version, records=stale,
                         budget_seconds=settings.cold_path_rescore_seconds)
                rescore_shown = blocks.enter_context(progress(
                    f"cold path rescore (rules {rules.version})", total=stale,
                    log_every_seconds=settings.progress_log_seconds))
            size = settings.cold_path_batch_size if remaining is None else min(remaining,
                                                                               settings.cold_path_batch_size)
            batch_started = time.monotonic()
            within_budget = older_rules and (rescoring_since is None or
                                             batch_started - rescoring_since < settings.cold_path_rescore_seconds)
            today = datetime.now(UTC).date()
            failures: list[tuple[PolicyRecord, Exception]] = []
            async with store.claim(source=source, exclude_ids=failed_ids, limit=size, rescore_since=rescore_since,
                                   rules_version=rules.version, older_rules=within_budget) as batch:
                if not batch.records:
                    # Nothing left: duplicates whose canonical record went away are scored again before the end.
                    requeued_now = await store.requeue_orphans(run_id)
                    requeued += requeued_now
                    if requeued_now:
                        continue
                    if background and not older_rules:
                        older_rules = True  # then the records of older rules, while the budget lasts
                        continue
                    break
                if batch.rescoring and rescoring_since is None:
                    rescoring_since = batch_started
                phases = {"claim": time.monotonic() - batch_started}
                assessments: list[Assessment] = []
                for record in batch.records:
                    try:
                        assessments.append(assess(record, today=today, weights=weights))
                    except Exception as error:  # a bug on one record must not stop the others
                        failures.append((record, error))
                probes = sorted({key for assessment in assessments for key in assessment.block_keys.probes})
                phases["assess"] = time.monotonic() - batch_started
                canonical = await batch.canonical_candidates(probes)
                phases["candidates"] = time.monotonic() - batch_started
                decisions = decide(assessments, canonical, quality_threshold=rules.quality_threshold,
                                   duplicate_threshold=rules.duplicate_threshold)
                # A background rescore that says what the last score said is not news: no event.
                news = [decision for decision in decisions if not (batch.rescoring and batch.unchanged(decision))]
                await batch.write(decisions, run_id=run_id, method=weights.method,
                                  events=_events(news, settings, batch.scored_at),
                                  elapsed_ms=int((time.monotonic() - batch_started) * 1000))
                phases["write"] = time.monotonic() - batch_started
            batch_seconds.append(time.monotonic() - batch_started)
            _observe(decisions, datetime.now(UTC))
            if failures:
                await _dead_letter(store, letters, failures, run_id)
                failed_ids.extend(record.id for record, _ in failures)
            if remaining is not None:
                remaining -= len(batch.records)
            if batch.rescoring and rescore_shown is not None:
                rescored += sum(batch.rescored_from(decision.record.id) is not None for decision in decisions)
                rescore_shown.advance(len(batch.records))
            else:
                shown.advance(len(batch.records))
            log.debug("cold_path_batch", run_id=run_id, records=len(batch.records), failed=len(failures),
                      candidates=len(canonical), seconds=round(batch_seconds[-1], 3), rescoring=batch.rescoring,
                      seconds_until={phase: round(seconds, 4) for phase, seconds in phases.items()},
                      **Counter(decision.outcome for decision in decisions))
    if rescoring_since is not None:
        log.info("cold_path_rescored", run_id=run_id, rules_version=rules.version, records=rescored,
                 seconds=round(time.monotonic() - rescoring_since, 3))
    return WorkerReport(failed=len(failed_ids), requeued=requeued, batches=len(batch_seconds),
                        batch_seconds=tuple(batch_seconds), rescored=rescored)


async def _stale_count(store: ColdPathStore, rules_version: str, source: str | None) -> int:
    """Scored records of other rules than `rules_version` (of `source`, if given)."""
    stale = await store.stale_by_source(rules_version)
    return stale.get(source, 0) if source is not None else sum(stale.values())


async def _dead_letter(store: ColdPathStore, letters: DeadLetterQueue,
                       failures: list[tuple[PolicyRecord, Exception]], run_id: str) -> None:
    already = await store.letters_pending_for([record.record_key for record, _ in failures])
    await letters.send([
        DeadLetter(stage="cold", error_code=ErrorCode.COLD_PATH_FAILED, source_system=record.source_system,
                   record_key=record.record_key,
                   error_message=f"could not be scored: {type(error).__name__}: {error}"[:2000],
                   error_details={"policy_id": record.id, "version": record.version, "run_id": run_id})
        for record, error in failures if record.record_key not in already
    ])
    metrics.pipeline_processing_total.labels(path="cold", status="failed").inc(len(failures))
