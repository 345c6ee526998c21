"""A failing property test reports its failing example: pytest, run with the repository's configuration
(pyproject.toml and tests/conftest.py) on a deliberately failing Hypothesis test in a module that has imported
Twisted (as `collectors.html_board` does), shows the failure and the example that Hypothesis found, and does not
crash in Hypothesis's patch writer (`INTERNALERROR ... AttributeError: __provides__`; see tests/conftest.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).parents[2]

FAILING_PROPERTY_TEST = '''
import abc

from hypothesis import given
from hypothesis import strategies as st

from aegis_pipeline.collectors import html_board  # noqa: F401  (imports Scrapy, so Twisted and zope.interface)


def test_the_crash_condition_is_present():
    # What made the patch writer crash: zope.interface's descriptor on abc.ABC, left there by Twisted.
    assert "__provides__" in vars(abc.ABC), "Twisted no longer marks abc.ABC: tests/conftest.py may drop its fix"


@given(n=st.integers())
def test_deliberately_failing_property(n):
    assert n < 10
'''


def test_a_failing_property_test_shows_its_example_and_pytest_does_not_crash(tmp_path: Path) -> None:
    shutil.copy(REPO / "tests" / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_failing_property.py").write_text(FAILING_PROPERTY_TEST, encoding="utf-8")

    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-c", str(REPO / "pyproject.toml"),
         "--rootdir", str(tmp_path), "-q", "test_failing_property.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    output = done.stdout + done.stderr

    assert done.returncode == 1, output  # tests failed (an internal error is 3)
    assert "INTERNALERROR" not in output and "__provides__" not in output, output
    assert "1 failed, 1 passed" in output, output
    # The example Hypothesis found (and shrank), with the failure it caused.
    assert "Failing test case: test_deliberately_failing_property(\n" in output, output
    assert "n=10," in output and "assert 10 < 10" in output, output
