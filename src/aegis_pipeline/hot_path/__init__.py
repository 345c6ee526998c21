"""Hot path: the Kafka consumer that validates raw records in well under a second, upserts them into PostgreSQL
as `pending_validation`, caches them in Redis and emits `policy.validated` (through the transactional outbox).

May import: `settings`, `common`, `schemas`, `stores`.
"""
