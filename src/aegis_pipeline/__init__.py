"""The Aegis data pipeline: collectors, hot path, cold path and sync, over one domain model.

Floors, lowest first; a package imports only from floors below it (checked by import-linter, `make lint`):

- `domain`: the policy, its cleaning, masking and content hash. Pure: no I/O, no clock.
- `settings`: all configuration, read once from the environment.
- `common`: error codes, logging, metrics, progress, redaction.
- `schemas`: the contracts other services depend on: events and database migrations.
- `stores`: one connection module per engine (the hooks), drivers' errors translated once.
- `collectors`, `hot_path`, `sync`: the stages; `cold_path` uses `sync` (it syncs after scoring).
- `devstack`, `airflow_tasks`, `dead_letter_retry`: what runs the stages (the embedded stack, the DAG tasks, the
  retry of dead letters);
- `cli`: the `aegis-pipeline` command.
"""
