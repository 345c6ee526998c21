"""The scoring rules and their version: what a quality score and a status decision mean.

A record's score and status follow from its content, the day it was scored, and the rules: the quality weights
(QUALITY_WEIGHT_*), the threshold under which a record is rejected (QUALITY_SCORE_THRESHOLD), the similarity from
which two records are one programme (DUPLICATE_SIMILARITY_THRESHOLD), and the constants of the code that make
up each dimension, validation and the duplicate guards (`scoring`, `validation`, `duplicates`: the schemes, the
completeness parts, the penalties, the limits of validation, the blocking bands, the guards' date tolerance and
title weight). `ScoringRules.parameters` is all of them as one JSON object; the rules' `version` is the first 12
hex digits of the SHA-256 of its canonical JSON (sorted keys, no spaces), so the same rules have the same version
in every process and release, and any change to one of them gives another.

Stored with every score (`policies.rules_version`, `quality_metrics.rules_version`) and, with its parameters, in
`scoring_rules_versions` (migration 0014), so that an operator can read what a version means and the cold path
can rescore, oldest version first, the records scored under older rules (`cold_path.run`).

A change of the scoring logic that no constant shows must change its module's `SCHEME` (`scoring.SCHEME`,
`duplicates.SCHEME`), which is part of the parameters: that is what makes it a new version.

Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from aegis_pipeline.cold_path import duplicates, scoring, validation
from aegis_pipeline.cold_path.scoring import QualityWeights
from aegis_pipeline.settings import CoreSettings

VERSION_DIGITS = 12  # hex digits of the version: 48 bits, no two versions of one catalogue's history collide


@dataclass(frozen=True)
class ScoringRules:
    """The settings that decide a score and a status; with the code's own constants, they make the version."""

    weights: QualityWeights
    quality_threshold: float
    duplicate_threshold: float

    @classmethod
    def from_settings(cls, settings: CoreSettings) -> ScoringRules:
        return cls(weights=QualityWeights(completeness=settings.quality_weight_completeness,
                                          accuracy=settings.quality_weight_accuracy,
                                          consistency=settings.quality_weight_consistency,
                                          timeliness=settings.quality_weight_timeliness),
                   quality_threshold=settings.quality_score_threshold,
                   duplicate_threshold=settings.duplicate_similarity_threshold)

    @cached_property
    def parameters(self) -> dict[str, Any]:
        """Everything that changes what a score or a status decision means, as plain JSON values (what
        `scoring_rules_versions.parameters` stores)."""
        weights = self.weights
        return {
            "quality": {
                "scheme": scoring.SCHEME,
                "weights": {"completeness": weights.completeness, "accuracy": weights.accuracy,
                            "consistency": weights.consistency, "timeliness": weights.timeliness},
                "threshold": self.quality_threshold,
                "completeness_fields": dict(scoring.COMPLETENESS_FIELDS),
                "full_content_characters": scoring.FULL_CONTENT_CHARACTERS,
                "accuracy_penalties": dict(scoring.ACCURACY_PENALTIES),
                "consistency_penalties": dict(scoring.CONSISTENCY_PENALTIES),
            },
            "validation": {
                "min_title_characters": validation.MIN_TITLE_CHARACTERS,
                "min_content_characters": validation.MIN_CONTENT_CHARACTERS,
                "max_title_characters": validation.MAX_TITLE_CHARACTERS,
                "earliest_year": validation.EARLIEST_YEAR,
                "years_ahead": validation.YEARS_AHEAD,
                "max_stray_replacements": validation.MAX_STRAY_REPLACEMENTS,
            },
            "duplicates": {
                "scheme": duplicates.SCHEME,
                "similarity_threshold": self.duplicate_threshold,
                "title_weight": duplicates.TITLE_WEIGHT,
                "min_title_similarity": duplicates.MIN_TITLE_SIMILARITY,
                "date_tolerance_days": duplicates.DATE_TOLERANCE_DAYS,
                "bands": duplicates.BANDS,
                "rows": duplicates.ROWS,
            },
        }

    @cached_property
    def canonical_json(self) -> str:
        """`parameters` as canonical JSON: keys sorted, no spaces, floats as Python's shortest round-trip repr."""
        return json.dumps(self.parameters, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False)

    @cached_property
    def version(self) -> str:
        """The rules' version: 12 hex digits of the SHA-256 of `canonical_json`."""
        return hashlib.sha256(self.canonical_json.encode("utf-8")).hexdigest()[:VERSION_DIGITS]
