"""Hot path: the Kafka consumer that validates raw records in well under a second, upserts them into PostgreSQL
as `pending_validation`, caches them in Redis and emits `policy.validated` (through the transactional outbox).
It is where records are cleaned (`domain.cleaning`), once: the raw topic is the trust boundary.

May import: `domain`, `settings`, `common`, `schemas`, `stores`.
"""
