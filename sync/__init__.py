"""Sync: PostgreSQL (the source of truth) to Milvus, the graph store and Elasticsearch, one target per store
behind a small contract, plus the consistency check and repair.

May import: `settings`, `common`, `schemas`, `stores`.
"""
