"""Airflow DAG definitions. DAG files only wire tasks to functions of `cold_path/` and `sync/`: no business
logic and no I/O at import time.

May import: `airflow.sdk`, `settings`, `cold_path`, `sync`, `common` (and `hot_path.cleaning`, the log masking).
"""
