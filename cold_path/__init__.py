"""Cold path: plain-Python batch jobs (no Airflow needed) for full validation, quality scoring, duplicate
detection and status changes; the Airflow DAGs in `dags/` call these functions.

May import: `settings`, `common`, `schemas`, `stores`, `sync`.
"""
