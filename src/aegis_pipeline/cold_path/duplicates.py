"""Near-duplicate detection: is this record a program we already keep, published by another source or worded
differently?

How it decides, for two records A and B (`compare`):

1. Guards that tell different programs apart even when their titles match (the near misses real sources are
   full of): different years in the titles, different round markers (상반기 / 하반기, 1차 / 2차, 추가),
   different notice numbers (공고 제2026-112호) when both titles carry one,
   disjoint 시·도 (from the titles and the target regions; 전국 is a scope of its own), unrelated
   organisations (abbreviations spelled out, agencies read as their ministry: 창업진흥원 = 중소벤처기업부),
   disjoint industries, or application periods that start or end more than `DATE_TOLERANCE_DAYS` apart.
   Any guard that fires: not a duplicate.
2. Similarity from 0 to 1: the titles reduced to what names the program (`features.title_identity`: no years,
   regions, ministry abbreviations, 공고/모집/사업 ...), compared as character bigrams by the mean of Jaccard and
   containment (a shorter title inside a longer one counts), weighted `TITLE_WEIGHT`; the bodies as character
   trigrams (containment), weighted the rest. Equal title, organisation, dates and body: 1.0 ("exact"). Titles
   less than `MIN_TITLE_SIMILARITY` alike are two programmes whatever the bodies say (boilerplate).
3. A duplicate when the similarity reaches the threshold (setting DUPLICATE_SIMILARITY_THRESHOLD).

Blocking (`block_keys`): MinHash of the title's bigrams, `BANDS` bands of `ROWS` rows. Two records are compared
only when they share a band: titles with Jaccard 0.5 share one with probability 0.93, unrelated titles (Jaccard
< 0.1) almost never. A band alone is not enough at national size: templated titles ("2026년 {지역} {대상} {사업}
공고") reduce to the same identity for every year and 시·도, so a band would hold thousands of records that a guard
tells apart anyway, and a record's cost would grow with the table. So each band key is pinned to the guards that
are plain equalities, as record-linkage blocking rules are (conjunctions of exact keys):

- the round markers, always (`rounds differ` fires on any difference, so two records of one band and another
  round can never match);
- the years and the 시·도 of the record. Either guard fires only when both records carry a value and the values
  are disjoint, so a record without one (a press release names no region, a standing programme no year) is a
  wildcard on it. Most records have both: they are filed under each (year, 시·도) "pair" and each "region", and
  probe their pairs and the band's "wildcard" key, under which every record missing a year or a 시·도 is filed.
  The rare wildcards probe wider: a record with a year only probes its year paired with each of the 18 시·도
  scopes (a closed set: `features.PROVINCE_SCOPES`), the records with its year only, those with a region only
  and those with neither; one with a region only probes "region" and those with neither or a year only; one with
  neither probes every "region" and every wildcard.

Every pair that passes the guards and shares a band therefore shares a key (tested); the blocks pinned records
probe hold the programme's own year and 시·도 only, so their size follows how many programmes one name has in one
year and region, not the size of the table. Records without a year or a region probe wider blocks (a whole band
for one with neither): that is the correct fallback, and such records are few. Keys are stored
(`policy_fingerprints`, with `SCHEME`) so a new record finds its candidates with one indexed query, never a table
scan; keys of another scheme are computed again before a run scores anything.

Pure: no I/O. Hashes are stable across processes (no `hash()`: Python salts it per process).
"""

from __future__ import annotations

import hashlib
import random
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np

from aegis_pipeline.cold_path.features import (
    PROVINCE_SCOPES,
    body_identity,
    industries_overlap,
    industry_scope,
    notice_numbers_in,
    organisation_family,
    organisations_related,
    province_scope,
    provinces_in,
    rounds_in,
    shingles,
    title_identity,
    years_in,
)
from aegis_pipeline.cold_path.records import PolicyRecord

SCHEME = "minhash-title-bigram/2"  # 2: band keys pinned to rounds, year and 시·도
BANDS, ROWS = 20, 3
DATE_TOLERANCE_DAYS = 14
TITLE_WEIGHT = 0.7
# Bodies share boilerplate (신청 방법, 제출 서류, 문의처): two programmes whose names have little in common but a
# kind ("정책자금 융자", "바우처 멘토링") reached the threshold on their bodies. Every labelled copy's titles are
# at least 0.69 alike; such look-alikes 0.44-0.49.
MIN_TITLE_SIMILARITY = 0.5

# MinHash permutations h(x) = (a*x + b) mod p over the bigrams' CRC-32: with p = 2^31 - 1, a*x + b stays under
# 2^63, so numpy computes them exactly in uint64.
_PRIME = np.uint64((1 << 31) - 1)
_RANDOM = random.Random(20261204)  # fixed: band keys must be the same in every process and every release
_MULTIPLIERS = np.array([_RANDOM.randrange(1, (1 << 31) - 1) for _ in range(BANDS * ROWS)], dtype=np.uint64)
_OFFSETS = np.array([_RANDOM.randrange(0, (1 << 31) - 1) for _ in range(BANDS * ROWS)], dtype=np.uint64)


@dataclass(frozen=True, slots=True)
class DuplicateFeatures:
    """What comparing needs of a record, computed once per record."""

    policy_id: str
    title_grams: frozenset[str]
    body_grams: frozenset[str]
    years: frozenset[int]
    rounds: frozenset[str]
    notices: frozenset[str]
    provinces: frozenset[str]
    organisation: str | None
    industries: frozenset[str]
    start: date | None
    end: date | None
    exact_key: str


@dataclass(frozen=True, slots=True)
class Match:
    canonical_id: str
    similarity: float
    method: str


def features(record: PolicyRecord) -> DuplicateFeatures:
    title = title_identity(record.title)
    body = body_identity(record.content)
    organisation = organisation_family(record.issuing_organization, record.title)
    exact = "\x1f".join([title, body, organisation or "", str(record.application_start_date),
                         str(record.application_end_date)])
    return DuplicateFeatures(
        policy_id=record.id,
        title_grams=shingles(title, 2),
        body_grams=shingles(body, 3),
        years=years_in(record.title),
        rounds=rounds_in(record.title),
        notices=notice_numbers_in(record.title),
        provinces=provinces_in(record.title) | province_scope(record.target_region),
        organisation=organisation,
        industries=industry_scope(record.target_industry),
        start=record.application_start_date,
        end=record.application_end_date,
        exact_key=hashlib.sha256(exact.encode("utf-8")).hexdigest(),
    )


@dataclass(frozen=True, slots=True)
class BlockKeys:
    """Where a record is filed (`stored`, in `policy_fingerprints`) and where it looks for candidates (`probes`).
    Signed 64-bit, for a PostgreSQL bigint[]."""

    stored: tuple[int, ...]
    probes: tuple[int, ...]


_MASK = (1 << 64) - 1


def _code(*parts: object) -> int:
    """A stable 64-bit code of a band or of a key kind and its pins."""
    return int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=8).digest(), "big")


def _key(band: int, kind: int) -> int:
    """The block key of a band and a kind code, signed for a PostgreSQL bigint: splitmix64's finaliser over their
    XOR (a few integer operations where a hash of the pair would cost microseconds, ~140 times per record)."""
    value = band ^ kind
    value = (value ^ (value >> 30)) * 0xBF58476D1CE4E5B9 & _MASK
    value = (value ^ (value >> 27)) * 0x94D049BB133111EB & _MASK
    value ^= value >> 31
    return value - (1 << 64) if value >= 1 << 63 else value


def _bands(item: DuplicateFeatures) -> list[int]:
    """The title's MinHash signature cut into `BANDS` bands of `ROWS` rows, each band as one code (vectorised:
    the signature is 60 minima over every bigram)."""
    hashed = np.fromiter((zlib.crc32(gram.encode("utf-8")) for gram in item.title_grams), dtype=np.uint64,
                         count=len(item.title_grams))
    signature = ((_MULTIPLIERS[:, None] * hashed[None, :] + _OFFSETS[:, None]) % _PRIME).min(axis=1).tolist()
    return [_code(band, signature[band * ROWS : (band + 1) * ROWS]) for band in range(BANDS)]


def block_keys(item: DuplicateFeatures) -> BlockKeys:
    """The record's block keys (see the module docstring); none for a title with nothing that names a program."""
    if not item.title_grams:
        return BlockKeys((), ())
    years, provinces = sorted(item.years), sorted(item.provinces)
    if years and provinces:
        pairs = [("pair", year, province) for year in years for province in provinces]
        files = pairs + [("region", province) for province in provinces]
        looks = [*pairs, ("wildcard",)]
    elif years:
        files = [*(("year only", year) for year in years), ("year only",), ("wildcard",)]
        looks = [*(("pair", year, province) for year in years for province in PROVINCE_SCOPES),
                 *(("year only", year) for year in years),
                 *(("region only", province) for province in PROVINCE_SCOPES), ("neither",)]
    elif provinces:
        files = [*(("region", p) for p in provinces), *(("region only", p) for p in provinces), ("wildcard",)]
        looks = [*(("region", province) for province in provinces), ("year only",), ("neither",)]
    else:
        files = [("neither",), ("wildcard",)]
        looks = [*(("region", province) for province in PROVINCE_SCOPES), ("year only",), ("neither",)]
    rounds = tuple(sorted(item.rounds))
    file_codes = [_code(rounds, *kind) for kind in files]
    look_codes = [_code(rounds, *kind) for kind in looks]
    bands = _bands(item)
    return BlockKeys(stored=tuple(_key(band, kind) for band in bands for kind in file_codes),
                     probes=tuple(_key(band, kind) for band in bands for kind in look_codes))


def _far_apart(first: date | None, second: date | None) -> bool:
    return first is not None and second is not None and abs((first - second).days) > DATE_TOLERANCE_DAYS


def different_programs(a: DuplicateFeatures, b: DuplicateFeatures) -> str | None:
    """The guard that tells the two apart, or None when nothing does."""
    if a.years and b.years and not a.years & b.years:
        return "years differ"
    if a.rounds != b.rounds:
        return "rounds differ"
    if a.notices and b.notices and not a.notices & b.notices:
        return "notice numbers differ"
    if a.provinces and b.provinces and not a.provinces & b.provinces:
        return "regions differ"
    if not organisations_related(a.organisation, b.organisation):
        return "organisations differ"
    if not industries_overlap(a.industries, b.industries):
        return "industries differ"
    if _far_apart(a.start, b.start) or _far_apart(a.end, b.end):
        return "application periods differ"
    return None


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


def _containment(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / min(len(a), len(b)) if a and b else 0.0


def similarity(a: DuplicateFeatures, b: DuplicateFeatures) -> tuple[float, str]:
    """(similarity 0..1, method); 0 when a guard says they are different programs."""
    if different_programs(a, b) is not None:
        return 0.0, "guard"
    if a.exact_key == b.exact_key:
        return 1.0, "exact"
    title = (_jaccard(a.title_grams, b.title_grams) + _containment(a.title_grams, b.title_grams)) / 2
    if title < MIN_TITLE_SIMILARITY:
        return 0.0, "title"
    body = _containment(a.body_grams, b.body_grams)
    return round(TITLE_WEIGHT * title + (1 - TITLE_WEIGHT) * body, 4), SCHEME


class CanonicalIndex:
    """Canonical records by band key: the candidates a new record is compared with."""

    def __init__(self) -> None:
        self._by_key: dict[int, list[DuplicateFeatures]] = {}

    def add(self, item: DuplicateFeatures, stored_keys: Sequence[int]) -> None:
        for key in stored_keys:
            self._by_key.setdefault(key, []).append(item)

    def candidates(self, probes: Sequence[int]) -> dict[str, DuplicateFeatures]:
        """The canonical records filed under at least one of `probes`, by id."""
        found: dict[str, DuplicateFeatures] = {}
        for key in probes:
            for candidate in self._by_key.get(key, ()):
                found.setdefault(candidate.policy_id, candidate)
        return found

    def best_match(self, item: DuplicateFeatures, probes: Sequence[int], threshold: float) -> Match | None:
        """The most similar canonical record filed under one of `probes`, if it reaches `threshold`."""
        best: Match | None = None
        for candidate_id, candidate in self.candidates(probes).items():
            if candidate_id == item.policy_id:
                continue
            value, method = similarity(item, candidate)
            if value >= threshold and (best is None or value > best.similarity):
                best = Match(candidate_id, value, method)
        return best
