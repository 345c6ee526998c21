"""Retrying dead letters through the stage that refused them: what `aegis-pipeline dlq retry` and the `dlq_retry`
DAG both do, here once.

Each pending letter with retries left (at most 3 each, `stores.dead_letters.MAX_RETRIES`), oldest failure first:

- a collector's letter (`collect`): mapped again with its source's current definition and, when valid now,
  published to the raw topic (`collectors.dead_letter_retry.retry_collect_letter`);
- a hot path letter (`hot`): processed again like a consumed message (`hot_path.dead_letter_retry`);
- a cold path or sync letter: skipped, their own runs retry that work.

A letter is resolved, or its failed retry counted (`exhausted` after the third). The events of the policies stored
now are relayed before returning. The sources file is read only when a collector's letter is met.

Raises `SourceConfigError` (not retriable) when that sources file cannot be read or is invalid, and a
`PipelineError` (DP_4003, not retriable) for an id that cannot be a letter's: no retry can help until a person
fixes it. A store that fails raises the store's error (`StoreUnavailableError`, retriable, when it is down;
`StoreRefusedError`, not retriable, when Kafka refuses the work); the letters retried before it keep their new
status.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import UUID

from aegis_pipeline.collectors.dead_letter_retry import retry_collect_letter
from aegis_pipeline.collectors.definitions import load_configured_sources
from aegis_pipeline.common.errors import PipelineError
from aegis_pipeline.common.logging import get_logger
from aegis_pipeline.hot_path.dead_letter_retry import retry_hot_letter
from aegis_pipeline.hot_path.service import open_hot_path
from aegis_pipeline.settings import Settings
from aegis_pipeline.stores import postgres
from aegis_pipeline.stores.dead_letters import DeadLetterStore

if TYPE_CHECKING:
    from aegis_pipeline.collectors.definitions import SourcesFile

log = get_logger(__name__)

# The consumer group of the hot path service a retry opens (it consumes nothing: it lends its processor).
RETRY_GROUP_ID = "aegis-dlq-retry"


@dataclass
class RetryReport:
    """How many retried letters ended in each status: resolved, pending, exhausted, skipped."""

    outcomes: dict[str, int] = field(default_factory=dict)

    def count(self, status: str) -> None:
        self.outcomes[status] = self.outcomes.get(status, 0) + 1

    @property
    def retried(self) -> int:
        return sum(self.outcomes.values())

    def summary(self) -> str:
        """`retried: exhausted 1, resolved 2`, statuses in alphabetical order; `retried: none` for no letter."""
        return "retried: " + (", ".join(f"{status} {count}" for status, count in sorted(self.outcomes.items()))
                              or "none")


async def retry_dead_letters(settings: Settings, *, ids: Iterable[str | UUID] | None = None,
                             sources_file: Path | None = None) -> RetryReport:
    """Retry the pending letters with retries left (only these `ids`, when given) through the stage that refused
    them; `sources_file` (default SOURCES_FILE) defines the sources of collectors' letters."""
    wanted = [_letter_id(letter_id) for letter_id in ids or ()] or None
    report = RetryReport()
    pool = await postgres.create_pool(settings)
    try:
        async with open_hot_path(settings, group_id=RETRY_GROUP_ID) as service:
            letters = DeadLetterStore(pool)
            sources: SourcesFile | None = None
            for letter in await letters.retriable(ids=wanted):
                if letter.stage == "collect":
                    if sources is None:
                        sources = load_configured_sources(settings, sources_file)
                    status = await retry_collect_letter(
                        letter, sources, service.producer, settings.kafka_topic_raw_policies, letters,
                        identifier_key=settings.identifier_hash_key.get_secret_value().encode("utf-8"))
                elif letter.stage == "hot":
                    status = await retry_hot_letter(letter, service.processor, letters)
                else:
                    status = "skipped"  # cold and sync failures are retried by their own runs
                report.count(status)
            await service.relay_pending()  # the events of the policies stored now
    finally:
        await pool.close()
    log.info("dead_letters_retried", retried=report.retried, outcomes=report.outcomes)
    return report


def _letter_id(value: str | UUID) -> str:
    """A letter id as the table holds it; one that cannot be a letter's (not a UUID) is a usage error."""
    try:
        return str(value if isinstance(value, UUID) else UUID(str(value)))
    except ValueError:
        raise PipelineError(f"not a dead-letter id (a UUID): {str(value)[:100]!r}") from None


