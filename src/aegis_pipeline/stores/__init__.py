"""Connections to each engine, one module per engine (the "hooks" of the Airflow provider's hook/operator split).

Each module builds its client from `Settings` (or a plain URL), offers `ping()`, and translates the driver's
exceptions into `common.errors` once, here, so callers never catch driver exceptions themselves. The work done
with a connection (upserts, sync, checks) lives in `hot_path/`, `cold_path/`, `sync/`, not here.

May import: `domain` (dead letters are masked with `domain.masking`), `settings`, `common`, the engines' client
libraries.
"""
