"""The DAGs' params without Airflow running: the names a `source` or `targets` param accepts are the shipped
sources file's and the sync's own, and those of the configured sources file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from aegis_pipeline.airflow_tasks import SHIPPED_SOURCES, SYNC_TARGETS, source_names
from aegis_pipeline.sync.targets import TARGET_NAMES

REPO = Path(__file__).parents[2]


def test_the_shipped_sources_and_the_sync_targets_are_the_ones_the_pipeline_has() -> None:
    shipped = yaml.safe_load((REPO / "helm/aegis-data-pipeline/files/sources.yaml").read_text(encoding="utf-8"))
    assert set(SHIPPED_SOURCES) == {source["name"] for source in shipped["sources"]}
    assert SYNC_TARGETS == TARGET_NAMES


def test_the_source_param_names_the_configured_sources_and_survives_a_broken_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no sources.yaml here, no .env
    configured = tmp_path / "configured.yaml"
    configured.write_text("sources:\n  - name: seoul_board\n  - {name: 7}\n", encoding="utf-8")
    monkeypatch.setenv("SOURCES_FILE", str(configured))
    assert source_names() == sorted({*SHIPPED_SOURCES, "seoul_board"})

    configured.write_text("sources: [", encoding="utf-8")  # unparsable: the DAG still parses, shipped names only
    assert source_names() == sorted(SHIPPED_SOURCES)
    monkeypatch.setenv("SOURCES_FILE", str(tmp_path / "missing.yaml"))
    assert source_names() == sorted(SHIPPED_SOURCES)

    # None configured: the embedded stack's sample sources, which `aegis-pipeline collect` then collects.
    monkeypatch.delenv("SOURCES_FILE")
    assert {"data_go_kr", "odcloud", *SHIPPED_SOURCES} <= set(source_names())
