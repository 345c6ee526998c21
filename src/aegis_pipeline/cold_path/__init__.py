"""Cold path: plain-Python batch jobs (no Airflow needed) for full validation, quality scoring, duplicate
detection and status changes; the Airflow DAGs in `dags/` call these functions.

- `records.py`: the policy as the cold path reads it; `features.py`, `validation.py`, `scoring.py`,
  `duplicates.py`, `status.py`: pure logic (no I/O, `today` passed in); `scoring_rules.py`: the version of the
  scoring rules stored with every score (pure);
- `store.py`: every PostgreSQL read and write; `run.py`: a run as `start_run`, `score_batches` (per worker) and
  `finish_run`, or all three in one process (`run_cold_path`).
- `retention_rules.py`: what the daily retention keeps, per table (pure); `retention.py`: deleting the history
  past it, in batches (the `policy_retention` DAG, `aegis-pipeline retention`).

May import: `domain`, `settings`, `common`, `schemas`, `stores`, `sync`.
"""
