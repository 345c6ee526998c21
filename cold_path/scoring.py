"""The quality score of a policy (design §5.1 `QualityScore`): four dimensions, each 0..1, and their weighted
total; and the status that follows from validation, score and duplicates.

- completeness: the expected fields present, each with a weight (`COMPLETENESS_FIELDS`); the body counts in
  proportion to its length up to `FULL_CONTENT_CHARACTERS`.
- accuracy: 1 minus the penalty of each validation warning (`ACCURACY_PENALTIES`); 0 when validation failed.
- consistency: 1 minus the penalty of each disagreement between fields (`CONSISTENCY_PENALTIES`): a year in the
  title that the application period does not cover, a 시·도 in the title outside the target regions, an
  application period longer than a year.
- timeliness: open or upcoming: 1; closed: 0.8 falling to 0 a year after the end date; no dates (상시 접수,
  추후 공지): 0.7 when collected in the last 30 days, falling to 0.4 after a year.

Pure: no I/O; `today` is passed in. `METHOD` names this scheme and the weights in `quality_metrics`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from cold_path.features import NATIONWIDE, province_scope, provinces_in, years_in
from cold_path.records import PolicyRecord
from cold_path.validation import Validation

SCHEME = "quality/1"
FULL_CONTENT_CHARACTERS = 200

COMPLETENESS_FIELDS: dict[str, float] = {
    "content": 0.20,
    "issuing_organization": 0.10,
    "target_region": 0.15,
    "target_industry": 0.10,
    "funding_type": 0.10,
    "application_start_date": 0.10,
    "application_end_date": 0.15,
    "original_url": 0.10,
}
ACCURACY_PENALTIES: dict[str, float] = {
    "markup_left": 0.25,
    "mojibake": 0.5,
    "content_is_title": 0.3,
    "title_too_long": 0.15,
    "region_unrecognised": 0.15,
    "url_not_https": 0.05,
}
CONSISTENCY_PENALTIES: dict[str, float] = {
    "title_year_outside_period": 0.4,
    "title_region_outside_targets": 0.4,
    "period_over_a_year": 0.2,
}
_FIELD_NAMES_KO = {
    "content": "본문", "issuing_organization": "기관", "target_region": "지역", "target_industry": "업종",
    "funding_type": "지원 유형", "application_start_date": "신청 시작일", "application_end_date": "신청 마감일",
    "original_url": "원문 링크",
}


@dataclass(frozen=True, slots=True)
class QualityWeights:
    completeness: float
    accuracy: float
    consistency: float
    timeliness: float

    @property
    def method(self) -> str:
        """What `quality_metrics.calculation_method` records: the scheme and the weights used."""
        return (f"{SCHEME} c={self.completeness:g} a={self.accuracy:g} "
                f"k={self.consistency:g} t={self.timeliness:g}")


@dataclass(frozen=True, slots=True)
class QualityScore:
    total_score: float
    completeness: float
    accuracy: float
    consistency: float
    timeliness: float
    reasons: tuple[str, ...]  # what lowered the score, for people

    def as_event_data(self) -> dict[str, float]:
        return {"total_score": self.total_score, "completeness": self.completeness, "accuracy": self.accuracy,
                "consistency": self.consistency, "timeliness": self.timeliness}


def _present(record: PolicyRecord, field: str) -> float:
    if field == "content":
        return min(1.0, len(record.content.strip()) / FULL_CONTENT_CHARACTERS)
    value = getattr(record, field)
    if isinstance(value, str):
        return 1.0 if value.strip() else 0.0
    if isinstance(value, tuple):
        return 1.0 if value else 0.0
    return 0.0 if value is None else 1.0


def completeness(record: PolicyRecord) -> tuple[float, list[str]]:
    score = 1.0 - sum(COMPLETENESS_FIELDS.values())  # the title: always there
    missing = []
    for field, weight in COMPLETENESS_FIELDS.items():
        present = _present(record, field)
        score += weight * present
        if present < 1.0:
            missing.append(_FIELD_NAMES_KO[field])
    return score, ([f"누락되거나 짧은 항목: {', '.join(missing)}"] if missing else [])


def accuracy(validation: Validation) -> tuple[float, list[str]]:
    if not validation.is_valid:
        return 0.0, []
    penalty = sum(ACCURACY_PENALTIES.get(finding.check, 0.1) for finding in validation.warnings)
    return max(0.0, 1.0 - penalty), [finding.message for finding in validation.warnings]


def consistency_findings(record: PolicyRecord) -> list[tuple[str, str]]:
    """(check, message) for each disagreement between the record's own fields."""
    findings = []
    start, end = record.application_start_date, record.application_end_date
    title_years = years_in(record.title)
    period_years = {day.year for day in (start, end) if day is not None}
    if title_years and period_years:
        # A program of year N is often announced, and applied for, late in year N - 1.
        covered = period_years | {year + 1 for year in period_years}
        if not title_years & covered:
            findings.append(("title_year_outside_period",
                             f"제목의 연도 {sorted(title_years)}와 신청 기간 {sorted(period_years)}이 다릅니다"))
    title_provinces = provinces_in(record.title)
    targets = province_scope(record.target_region)
    if title_provinces and targets and NATIONWIDE not in targets and not title_provinces & targets:
        findings.append(("title_region_outside_targets",
                         f"제목의 지역 {', '.join(sorted(title_provinces))}이 대상 지역에 없습니다"))
    if start and end and (end - start).days > 366:
        findings.append(("period_over_a_year", f"신청 기간이 {(end - start).days}일입니다"))
    return findings


def consistency(record: PolicyRecord) -> tuple[float, list[str]]:
    findings = consistency_findings(record)
    penalty = sum(CONSISTENCY_PENALTIES[check] for check, _ in findings)
    return max(0.0, 1.0 - penalty), [message for _, message in findings]


def timeliness(record: PolicyRecord, today: date) -> tuple[float, list[str]]:
    start, end = record.application_start_date, record.application_end_date
    if end is not None:
        if end >= today:
            return 1.0, []
        days_closed = (today - end).days
        return max(0.0, 0.8 * (1 - days_closed / 365)), [f"신청 마감 후 {days_closed}일이 지났습니다"]
    if start is not None:
        if start >= today:
            return 1.0, []
        days_open = (today - start).days
        return max(0.3, 0.9 - 0.6 * days_open / 365), ["신청 마감일이 없습니다"]
    collected = record.collected_at.date() if record.collected_at else record.created_at.date()
    age_days = max(0, (today - collected).days)
    if age_days <= 30:
        return 0.7, ["신청 기간이 없습니다"]
    return max(0.4, 0.7 - 0.3 * (age_days - 30) / 335), ["신청 기간이 없고 수집한 지 오래되었습니다"]


def score(record: PolicyRecord, validation: Validation, *, today: date, weights: QualityWeights) -> QualityScore:
    """The record's four dimensions and their weighted total, rounded to 4 decimals."""
    dimensions = {
        "completeness": completeness(record),
        "accuracy": accuracy(validation),
        "consistency": consistency(record),
        "timeliness": timeliness(record, today),
    }
    values = {name: round(min(1.0, max(0.0, value)), 4) for name, (value, _) in dimensions.items()}
    total = sum(values[name] * getattr(weights, name) for name in values)
    reasons = tuple(reason for _, messages in dimensions.values() for reason in messages)
    return QualityScore(total_score=round(min(1.0, max(0.0, total)), 4), reasons=reasons, **values)
