"""The policy as the cold path reads it from PostgreSQL: a plain, immutable value the pure modules work on."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime


@dataclass(frozen=True, slots=True)
class PolicyRecord:
    """One row of `policies` (what the hot path stored, cleaned and masked) at the `version` that was loaded."""

    id: str
    source_system: str
    external_id: str
    title: str
    content: str
    issuing_organization: str
    target_region: tuple[str, ...]
    target_industry: tuple[str, ...]
    funding_type: str | None
    application_start_date: date | None
    application_end_date: date | None
    original_url: str | None
    collected_at: datetime | None
    created_at: datetime
    updated_at: datetime
    version: int
    status: str

    @property
    def record_key(self) -> str:
        return f"{self.source_system}:{self.external_id}"
