"""The policy as the cold path reads it from PostgreSQL: a plain, immutable value the pure modules work on.

`PolicyRecord` is the policy's content (`domain.policy.PolicyContent`, whose fields are named there only) plus
what the store keeps about a row (id, version, status, timestamps). It stays here, not in the domain: those are
the store's bookkeeping and only the cold path reads them. `cold_path.store` reads exactly its fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from aegis_pipeline.domain.policy import PolicyContent


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyRecord(PolicyContent):
    """One row of `policies` (what the hot path stored, cleaned and masked) at the `version` that was loaded."""

    id: str
    collected_at: datetime | None
    created_at: datetime
    updated_at: datetime
    version: int
    status: str
