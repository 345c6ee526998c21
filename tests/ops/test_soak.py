"""The soak benchmark (issue 22) runs end to end and stops by itself: `bench/soak.py` for one soak minute shortened
to 20 s (`--minute-seconds`), on a stack of its own in a temporary directory (started and deleted by the script,
as in a real run). Its last line is JSON with one row per minute and the verdicts; nothing the source offered is
lost, and the last batch's consistency check is clean. The flatness verdicts need minutes 5-10: not judged here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ROW_KEYS = {"minute", "offered_new", "offered_changes", "stored_new", "stored_updates", "unstored", "events",
            "events_by_type", "dead_letters", "hot_p99_ms", "hot_latency_observations", "processes", "batch_runs",
            "batch_skipped", "postgres_mb"}


def test_a_one_minute_soak_loses_nothing_and_reports_every_figure(tmp_path: Path) -> None:
    finished = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "soak.py"), "--minutes", "1", "--minute-seconds", "20", "--rate", "5",
         "--data-dir", str(tmp_path / "stack")],
        cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert finished.returncode == 0, finished.stderr[-3000:]
    report = json.loads(finished.stdout.strip().splitlines()[-1])

    [row] = report["rows"]
    assert set(row) == ROW_KEYS
    assert row["offered_new"] > 0 and row["offered_changes"] > 0
    assert set(row["processes"]) == {"hot_path", "scheduler"}
    assert all(figures["rss_mb"] > 0 and figures["fds"] > 0 for figures in row["processes"].values())
    assert set(row["postgres_mb"]) >= {"policies", "event_outbox", "dead_letters"}
    assert row["dead_letters"] == 0
    assert [run["command"] for run in report["final_batch"]] == ["cold_path", "sync", "consistency"]
    assert all(run["exit_code"] == 0 and run["peak_rss_mb"] > 0 for run in report["final_batch"])
    assert report["events_by_type"]["policy.validated"] > 0

    verdicts = report["verdicts"]
    assert verdicts["nothing_lost"]["passed"], verdicts["nothing_lost"]
    assert verdicts["nothing_lost"]["offered"] == verdicts["nothing_lost"]["stored"] > 0
    assert verdicts["consistency_clean"]["passed"], verdicts["consistency_clean"]
    assert verdicts["processes_alive"]["passed"], verdicts["processes_alive"]
    assert verdicts["latency_flat"] is None  # one minute: nothing after start-up to judge
    assert report["met"]["memory_flat_hot_path"] is None
    assert report["all_met"] is True
