"""The rules version (cold_path/scoring_rules.py): derived from everything that changes what a score or a status means,
the same in every process, another for any change."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from aegis_pipeline.cold_path import duplicates, scoring
from aegis_pipeline.cold_path.scoring_rules import ScoringRules
from aegis_pipeline.settings import CoreSettings

DEFAULTS = ScoringRules.from_settings(CoreSettings())


def test_the_version_is_a_short_hash_of_the_canonical_parameters() -> None:
    assert len(DEFAULTS.version) == 12 and int(DEFAULTS.version, 16) >= 0
    assert json.loads(DEFAULTS.canonical_json) == DEFAULTS.parameters
    parameters = DEFAULTS.parameters
    assert parameters["quality"]["weights"] == {"completeness": 0.3, "accuracy": 0.3, "consistency": 0.2,
                                                "timeliness": 0.2}
    assert parameters["quality"]["threshold"] == 0.7 and parameters["quality"]["scheme"] == scoring.SCHEME
    assert parameters["duplicates"]["similarity_threshold"] == 0.55
    assert parameters["duplicates"]["scheme"] == duplicates.SCHEME
    assert parameters["duplicates"]["date_tolerance_days"] == duplicates.DATE_TOLERANCE_DAYS


def test_the_same_rules_have_the_same_version_in_another_process() -> None:
    """No per-process salt (Python's hash()) and no dict order: a worker in another process stores the same."""
    code = ("from aegis_pipeline.cold_path.scoring_rules import ScoringRules; from aegis_pipeline.settings import "
            "CoreSettings; print(ScoringRules.from_settings(CoreSettings()).version)")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": "12345", "PATH": ""})
    assert other.stdout.strip() == DEFAULTS.version
    # Values given as text (the environment) are the same rules as the defaults they equal.
    assert ScoringRules.from_settings(CoreSettings(quality_weight_accuracy="0.30")).version == DEFAULTS.version


@pytest.mark.parametrize("change", [
    {"quality_weight_completeness": 0.4, "quality_weight_accuracy": 0.2},
    {"quality_weight_consistency": 0.1, "quality_weight_timeliness": 0.3},
    {"quality_score_threshold": 0.71},
    {"duplicate_similarity_threshold": 0.6},
])
def test_any_setting_of_the_rules_gives_another_version(change: dict[str, float]) -> None:
    assert ScoringRules.from_settings(CoreSettings(**change)).version != DEFAULTS.version


def test_a_constant_of_the_code_gives_another_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(duplicates, "DATE_TOLERANCE_DAYS", duplicates.DATE_TOLERANCE_DAYS + 1)
    assert ScoringRules.from_settings(CoreSettings()).version != DEFAULTS.version
    monkeypatch.undo()
    monkeypatch.setattr(scoring, "SCHEME", "quality/3")
    assert ScoringRules.from_settings(CoreSettings()).version != DEFAULTS.version


def test_settings_outside_the_rules_keep_the_version() -> None:
    other = CoreSettings(cold_path_batch_size=7, cold_path_rescore_seconds=1.0, progress_log_seconds=1.0)
    assert ScoringRules.from_settings(other).version == DEFAULTS.version
