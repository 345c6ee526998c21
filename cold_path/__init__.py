"""Cold path: plain-Python batch jobs (no Airflow needed) for full validation, quality scoring, duplicate
detection and status changes; the Airflow DAGs in `dags/` call these functions.

- `records.py`: the policy as the cold path reads it; `features.py`, `validation.py`, `scoring.py`,
  `duplicates.py`, `status.py`: pure logic (no I/O, `today` passed in);
- `store.py`: every PostgreSQL read and write; `run.py`: `run_cold_path`, one run, batch after batch.

May import: `settings`, `common`, `schemas`, `stores`, `sync`, `hot_path.cleaning` (pure: the region table).
"""
