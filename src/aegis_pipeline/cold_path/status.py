"""What becomes of each record of a batch: validated, scored, checked for duplicates, and given its status.

- Validation errors: `rejected`, DP_2001.
- Valid but `total_score` below the threshold: `rejected`, DP_2002.
- Valid, good enough, and the same program as a canonical record (an active record already kept, or a better
  one of the same batch): `rejected`, DP_2003, linked to that canonical record.
- Otherwise `active`: the record becomes the canonical record of its program.

The canonical record of a program stays canonical: a new record never takes its place (consumers already hold
it), not even when both are scored again in one batch; among new records of one batch the best-scoring record
of a program is kept and the others link to it.

Pure: no I/O; `today` is passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from aegis_pipeline.cold_path import duplicates
from aegis_pipeline.cold_path.duplicates import BlockKeys, CanonicalIndex, DuplicateFeatures, Match
from aegis_pipeline.cold_path.records import PolicyRecord
from aegis_pipeline.cold_path.scoring import QualityScore, QualityWeights, score
from aegis_pipeline.cold_path.validation import Validation, validate
from aegis_pipeline.common.errors import ErrorCode
from aegis_pipeline.domain.policy import DataStatus


@dataclass(frozen=True, slots=True)
class Assessment:
    """A record validated and scored, with what duplicate detection needs of it."""

    record: PolicyRecord
    validation: Validation
    quality: QualityScore
    features: DuplicateFeatures
    block_keys: BlockKeys


@dataclass(frozen=True, slots=True)
class Decision:
    assessment: Assessment
    status: DataStatus
    error_code: ErrorCode | None  # why it was rejected
    reasons: tuple[str, ...]      # for people
    duplicate_of: Match | None

    @property
    def record(self) -> PolicyRecord:
        return self.assessment.record

    @property
    def stated_reasons(self) -> list[str]:
        """The reasons as stored (`policies.status_reasons`) and announced (`data.quality_updated`'s `reasons`):
        a rejection's each start with its DP code."""
        code = self.error_code.value if self.error_code else None
        return [f"{code}: {reason}" if code else reason for reason in self.reasons]

    @property
    def outcome(self) -> str:
        """The run's count this record adds to: active, rejected or duplicate."""
        return "duplicate" if self.duplicate_of is not None else self.status.value


def assess(record: PolicyRecord, *, today: date, weights: QualityWeights) -> Assessment:
    validation = validate(record, today=today)
    features = duplicates.features(record)
    return Assessment(record=record, validation=validation,
                      quality=score(record, validation, today=today, weights=weights),
                      features=features, block_keys=duplicates.block_keys(features))


def decide(
    assessments: Sequence[Assessment],
    canonical: Sequence[tuple[DuplicateFeatures, Sequence[int]]],
    *,
    quality_threshold: float,
    duplicate_threshold: float,
) -> list[Decision]:
    """The status of each assessed record; `canonical` are the active records filed under a key one of them
    probes (features and stored keys), loaded by the caller."""
    index = CanonicalIndex()
    for item, keys in canonical:
        index.add(item, keys)
    # Records already active go first (scored again, they keep their place as canonical records); then the best
    # record of a program, which becomes canonical; ties: the first collected.
    ordered = sorted(assessments, key=lambda a: (a.record.status != DataStatus.ACTIVE, -a.quality.total_score,
                                                 a.record.created_at, a.record.id))
    decisions = []
    for assessment in ordered:
        quality = assessment.quality
        if not assessment.validation.is_valid:
            reasons = tuple(finding.message for finding in assessment.validation.errors)
            decisions.append(Decision(assessment, DataStatus.REJECTED, ErrorCode.VALIDATION_FAILED,
                                      reasons, None))
            continue
        if quality.total_score < quality_threshold:
            summary = f"품질 점수 {quality.total_score:.2f} < 기준 {quality_threshold:.2f}"
            decisions.append(Decision(assessment, DataStatus.REJECTED, ErrorCode.QUALITY_SCORE_TOO_LOW,
                                      (summary, *quality.reasons), None))
            continue
        match = index.best_match(assessment.features, assessment.block_keys.probes, duplicate_threshold)
        if match is not None:
            reason = f"중복: {match.canonical_id}와 같은 사업입니다 (유사도 {match.similarity:.2f}, {match.method})"
            decisions.append(Decision(assessment, DataStatus.REJECTED, ErrorCode.DUPLICATE_DATA_DETECTED,
                                      (reason,), match))
            continue
        index.add(assessment.features, assessment.block_keys.stored)
        decisions.append(Decision(assessment, DataStatus.ACTIVE, None, quality.reasons, None))
    return decisions
