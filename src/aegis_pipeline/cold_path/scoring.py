"""The quality score of a policy (design §5.1 `QualityScore`): four dimensions, each 0..1, and their weighted
total; and the status that follows from validation, score and duplicates.

- completeness: what every announcement has, whatever kind of source it comes from, each part with a weight
  (`COMPLETENESS_FIELDS`): the title and the body (the body in proportion to its meaningful characters up to
  `FULL_CONTENT_CHARACTERS`), both only when the text can be shown as it is (no broken characters, no markup
  left); the issuing organisation (a publisher such as 정책브리핑 is not one); the link to the original.
  Not demanded: target region, industry and funding type (web boards and feeds have none of them, 기업마당 has no
  region or industry field, K-Startup and 정부24 no industry), and the application period (a programme open
  until the budget runs out has none; timeliness scores an undated programme).
- accuracy: 1 minus the penalty of each validation warning (`ACCURACY_PENALTIES`); 0 when validation failed.
- consistency: 1 minus the penalty of each disagreement between fields (`CONSISTENCY_PENALTIES`): a year in the
  title that the application period does not cover, a 시·도 in the title outside the target regions, an
  application period longer than a year.
- timeliness: open or upcoming: 1; closed: 0.8 falling to 0 a year after the end date; no dates (상시 접수,
  추후 공지): 0.7 when collected in the last 30 days, falling to 0.4 after a year. A title that names only years
  before the application period (a past year's notice with new dates, or wrong dates) is not trusted to be open:
  the programme counts as closed at the end of the title's year.

Calibration (`SCHEME` quality/2), with the default weights (0.3, 0.3, 0.2, 0.2) and threshold 0.7: no single
dimension can reject a record that is sound in the other three (0.3 is the most one dimension can take away), so
a defect that must reject on its own lowers two dimensions. Broken characters or markup left: accuracy -0.5 and
the text does not count for completeness (-0.6), 0.33 of the total. A title year before the period:
consistency 0 and timeliness as closed since the end of that year. A complete record of any source kind, in time
or not, scores at least 0.3 + 0.3 x accuracy + 0.2 x consistency (0.8 when clean).

Pure: no I/O; `today` is passed in. `METHOD` names this scheme and the weights in `quality_metrics`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from aegis_pipeline.cold_path.features import NATIONWIDE, is_publisher, programme_years_in, province_scope, provinces_in
from aegis_pipeline.cold_path.records import PolicyRecord
from aegis_pipeline.cold_path.validation import Validation, meaningful_length, text_fit_to_show

SCHEME = "quality/2"
# Meaningful characters (letters, digits, Hangul) of a body that says what a programme gives to whom: the
# summaries real sources send (기업마당 bsnsSumryCn, 정부24 서비스목적요약, RSS descriptions) have 33 and more;
# validation refuses fewer than 20 (MIN_CONTENT_CHARACTERS).
FULL_CONTENT_CHARACTERS = 30

COMPLETENESS_FIELDS: dict[str, float] = {
    "title": 0.10,
    "content": 0.50,
    "issuing_organization": 0.20,
    "original_url": 0.20,
}
ACCURACY_PENALTIES: dict[str, float] = {
    "markup_left": 0.5,
    "mojibake": 0.5,
    "replacement_character": 0.1,
    "title_too_long": 0.15,
    "region_unrecognised": 0.15,
    "url_not_https": 0.05,
}
CONSISTENCY_PENALTIES: dict[str, float] = {
    "title_year_outside_period": 1.0,
    "title_region_outside_targets": 0.4,
    "period_over_a_year": 0.2,
}
_FIELD_NAMES_KO = {
    "title": "제목", "content": "본문", "issuing_organization": "기관", "original_url": "원문 링크",
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


def _present(record: PolicyRecord, field: str, text_fit: bool) -> float:
    if field == "title":
        return 1.0 if text_fit else 0.0  # validation refused an unusable title
    if field == "content":
        if not text_fit:
            return 0.0
        return min(1.0, meaningful_length(record.content) / FULL_CONTENT_CHARACTERS)
    if field == "issuing_organization":
        return 0.0 if is_publisher(record.issuing_organization) else 1.0
    value = getattr(record, field)
    if isinstance(value, str):
        return 1.0 if value.strip() else 0.0
    return 0.0 if value is None else 1.0


def completeness(record: PolicyRecord, validation: Validation | None = None) -> tuple[float, list[str]]:
    """What every announcement has (see the module docstring); `validation` says whether the text is fit to show
    (without it, the text counts as fit)."""
    text_fit = validation is None or text_fit_to_show(validation)
    score = 0.0
    missing = []
    for field, weight in COMPLETENESS_FIELDS.items():
        present = _present(record, field, text_fit)
        score += weight * present
        if present < 1.0 and (text_fit or field not in ("title", "content")):
            missing.append(_FIELD_NAMES_KO[field])
    reasons = [] if text_fit else ["제목과 본문을 그대로 보여 줄 수 없어 없는 것으로 칩니다 (깨진 글자 또는 HTML)"]
    if missing:
        reasons.append(f"누락되거나 짧은 항목: {', '.join(missing)}")
    return score, reasons


def accuracy(validation: Validation) -> tuple[float, list[str]]:
    if not validation.is_valid:
        return 0.0, []
    penalty = sum(ACCURACY_PENALTIES.get(finding.check, 0.1) for finding in validation.warnings)
    return max(0.0, 1.0 - penalty), [finding.message for finding in validation.warnings]


def consistency_findings(record: PolicyRecord) -> list[tuple[str, str]]:
    """(check, message) for each disagreement between the record's own fields."""
    findings = []
    start, end = record.application_start_date, record.application_end_date
    title_years = programme_years_in(record.title)
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


def _end_of_stale_title_year(record: PolicyRecord) -> date | None:
    """Dec 31 of the title's year when the title names only years before the application period: the notice is a
    past year's (re-listed with new dates, or with wrong ones), so the period does not show it open."""
    title_years = programme_years_in(record.title)
    period_years = [day.year for day in (record.application_start_date, record.application_end_date) if day]
    if title_years and period_years and max(title_years) < min(period_years):
        return date(max(title_years), 12, 31)
    return None


def timeliness(record: PolicyRecord, today: date) -> tuple[float, list[str]]:
    start, end = record.application_start_date, record.application_end_date
    stale_end = _end_of_stale_title_year(record)
    if stale_end is not None:
        days_closed = max(0, (today - stale_end).days)
        return (max(0.0, min(1.0, 0.8 * (1 - days_closed / 365))),
                [f"제목의 연도({stale_end.year}년)가 끝난 지 {days_closed}일이 지났습니다"])
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
        "completeness": completeness(record, validation),
        "accuracy": accuracy(validation),
        "consistency": consistency(record),
        "timeliness": timeliness(record, today),
    }
    values = {name: round(min(1.0, max(0.0, value)), 4) for name, (value, _) in dimensions.items()}
    total = sum(values[name] * getattr(weights, name) for name in values)
    reasons = tuple(reason for _, messages in dimensions.values() for reason in messages)
    return QualityScore(total_score=round(min(1.0, max(0.0, total)), 4), reasons=reasons, **values)
