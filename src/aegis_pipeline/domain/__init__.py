"""The domain: the policy itself, the lowest floor of the package, under everything else.

What lives here (pure: no I/O, no clock, no logging; the same input always gives the same output):

- `policy`: THE policy. `PolicyContent` names its content fields once; `POLICY_CONTENT_COLUMNS` is derived from
  it and every SQL builder and event builder uses it. `CleanPolicy` (what the hot path stores) extends it; so do
  `cold_path.records.PolicyRecord` and `sync.targets.base.SyncDocument`, each in its own stage. Also the
  statuses of a policy's life (`DataStatus`) and the two processing paths (`ProcessingPath`).
- `records`: `RawPolicyData` and `CollectionMetadata`, the record as collected (the raw topic's contract), and
  `RawPolicyData.content_values()`, the one mapping of its fields onto `PolicyContent`'s.
- `text`: text helpers (control characters removed, NFC).
- `masking`: personal data (phone and fax numbers, e-mail addresses, registration numbers) replaced by tokens.
- `identifiers`: an id, a record key or a field name holding personal data replaced, whole, by its keyed hash
  (`identifier_without_personal_data`), used wherever a record's identity is formed (collectors, hot path).
- `regions`: one canonical name per 시·도 (`canonical_region`, `PROVINCES`, `NATIONWIDE`).
- `hashing`: the content hash, defined once (`content_hash`, `HASH_SCHEME`).
- `cleaning`: `normalize_record(RawPolicyData) -> CleanPolicy`, built from the modules above.

May import: the standard library, pydantic and orjson. Never another `aegis_pipeline` package: every other
package may import this one (import-linter, `[tool.importlinter]` in pyproject.toml, enforces it).
"""
