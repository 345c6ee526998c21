"""The floors of the package (pyproject.toml, [tool.importlinter]) are enforced: `lint-imports`, which `make lint`
runs, passes on the package as it is and fails on a copy with one import that breaks a floor."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]
LINT_IMPORTS = str(Path(sys.executable).with_name("lint-imports"))


def lint_imports(source_root: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` with the repository's contract, on the package found under `source_root`."""
    environment = {**os.environ, "PYTHONPATH": str(source_root), "NO_COLOR": "1"}
    return subprocess.run([LINT_IMPORTS, "--config", str(REPO / "pyproject.toml"), "--no-cache"], cwd=source_root,
                          env=environment, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def package_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("floors") / "src"
    shutil.copytree(REPO / "src" / "aegis_pipeline", root / "aegis_pipeline",
                    ignore=shutil.ignore_patterns("__pycache__", "*.yaml", "*.json", "sample_data"))
    return root


def test_the_package_keeps_its_floors(package_copy: Path) -> None:
    done = lint_imports(package_copy)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 kept, 0 broken" in done.stdout


def test_an_import_from_a_higher_floor_fails_the_lint(package_copy: Path) -> None:
    masking = package_copy / "aegis_pipeline" / "domain" / "masking.py"
    original = masking.read_text(encoding="utf-8")
    masking.write_text(original + "\nfrom aegis_pipeline.stores import kafka  # noqa: E402\n", encoding="utf-8")
    try:
        done = lint_imports(package_copy)
    finally:
        masking.write_text(original, encoding="utf-8")
    assert done.returncode != 0
    assert "aegis_pipeline.domain.masking -> aegis_pipeline.stores.kafka" in done.stdout, done.stdout


def test_stages_on_one_floor_do_not_import_each_other(package_copy: Path) -> None:
    features = package_copy / "aegis_pipeline" / "cold_path" / "features.py"
    original = features.read_text(encoding="utf-8")
    features.write_text(original + "\nfrom aegis_pipeline.hot_path import store  # noqa: E402\n", encoding="utf-8")
    try:
        done = lint_imports(package_copy)
    finally:
        features.write_text(original, encoding="utf-8")
    assert done.returncode != 0
    assert "aegis_pipeline.cold_path.features -> aegis_pipeline.hot_path.store" in done.stdout, done.stdout
