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


@pytest.mark.parametrize(("module", "bad_import", "reported"), [
    ("domain/masking.py", "from aegis_pipeline.stores import kafka",
     "aegis_pipeline.domain.masking -> aegis_pipeline.stores.kafka"),  # an import from a higher floor
    ("cold_path/features.py", "from aegis_pipeline.hot_path import store",
     "aegis_pipeline.cold_path.features -> aegis_pipeline.hot_path.store"),  # between stages on one floor
])
def test_an_import_that_breaks_a_floor_fails_the_lint(package_copy: Path, module: str, bad_import: str,
                                                       reported: str) -> None:
    path = package_copy / "aegis_pipeline" / module
    original = path.read_text(encoding="utf-8")
    path.write_text(original + f"\n{bad_import}  # noqa: E402\n", encoding="utf-8")
    try:
        done = lint_imports(package_copy)
    finally:
        path.write_text(original, encoding="utf-8")
    assert done.returncode != 0
    assert reported in done.stdout, done.stdout
