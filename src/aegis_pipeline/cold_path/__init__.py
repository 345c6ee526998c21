"""Cold path: plain-Python batch jobs (no Airflow needed) for full validation, quality scoring, duplicate
detection and status changes; the Airflow DAGs in `dags/` call these functions.

- `records.py`: the policy as the cold path reads it; `features.py`, `validation.py`, `scoring.py`,
  `duplicates.py`, `status.py`: pure logic (no I/O, `today` passed in);
- `store.py`: every PostgreSQL read and write; `run.py`: a run as `start_run`, `score_batches` (per worker) and
  `finish_run`, or all three in one process (`run_cold_path`).

May import: `domain`, `settings`, `common`, `schemas`, `stores`, `sync`.
"""
