"""Digests of (id, checksum) pairs per bucket of ids, and the diff of two id -> checksum maps. Pure: no I/O.

A consistency check compares PostgreSQL with a target without reading every document: both sides are summed per
bucket (a bucket is a fixed hash of the id), and only the buckets whose sums differ are read in full and
diffed. A bucket's digest is its document count and the sum of each document's 32-bit digest (the checksum's
first 8 hex digits): a sum, so engines can compute it with their own aggregations (Elasticsearch `sum`, Cypher
`sum()`), and exact in a double for up to 2**21 documents per bucket.

A graph document is a node and its outgoing links. Each node a policy can link to carries a 32-bit `link_key`
(`link_key(label, name)`), and a policy's links digest is the sum of the keys of the nodes it links to: a sum
again, so Cypher can recompute it from the links actually present (`sum(x.link_key)`) and compare it with the
digest written from PostgreSQL's view. A link re-pointed to another node changes the sum unless the two keys
collide (1 in 2**32).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

BUCKETS = 1024  # stored in every document as `sync_bucket`: changing it means a rebuild of every target


def _hash32(text: str) -> int:
    return int(hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()[:8], 16)


def bucket_of(policy_id: str) -> int:
    return _hash32(policy_id) % BUCKETS


def digest_of(checksum: str) -> int:
    return int(checksum[:8], 16)


def link_key(label: str, name: str) -> int:
    """The 32-bit key of the node `label` named `name` (a Policy: its id), the same in every process and engine."""
    return _hash32(f"{label}\x1f{name}")


def links_digest(links: Iterable[tuple[str, str]]) -> int:
    """The digest of a policy's outgoing links: the sum of the keys of the (label, name) nodes they point at."""
    return sum(link_key(label, name) for label, name in links)


@dataclass(frozen=True)
class BucketDigest:
    count: int
    total: int


def summarize(checksums: Iterable[tuple[str, str]]) -> dict[int, BucketDigest]:
    """Bucket digests of (id, checksum) pairs."""
    return summarize_digests((bucket_of(policy_id), digest_of(checksum)) for policy_id, checksum in checksums)


def summarize_digests(digests: Iterable[tuple[int, int]]) -> dict[int, BucketDigest]:
    """Bucket digests of (bucket, document digest) pairs, as a target stores them beside each document."""
    counts: dict[int, int] = {}
    totals: dict[int, int] = {}
    for bucket, digest in digests:
        counts[bucket] = counts.get(bucket, 0) + 1
        totals[bucket] = totals.get(bucket, 0) + digest
    return {bucket: BucketDigest(counts[bucket], totals[bucket]) for bucket in counts}


def differing_buckets(expected: Mapping[int, BucketDigest], actual: Mapping[int, BucketDigest]) -> set[int]:
    """Buckets whose digests differ (a bucket absent on one side differs unless it is empty on the other)."""
    empty = BucketDigest(0, 0)
    return {bucket for bucket in expected.keys() | actual.keys()
            if expected.get(bucket, empty) != actual.get(bucket, empty)}


@dataclass(frozen=True)
class Drift:
    """How a target differs from PostgreSQL, as sorted id lists."""

    missing: list[str] = field(default_factory=list)   # active in PostgreSQL, absent from the target
    stale: list[str] = field(default_factory=list)     # present with another checksum
    orphaned: list[str] = field(default_factory=list)  # in the target, not active in PostgreSQL

    @property
    def total(self) -> int:
        return len(self.missing) + len(self.stale) + len(self.orphaned)

    def counts(self) -> dict[str, int]:
        return {"missing": len(self.missing), "stale": len(self.stale), "orphaned": len(self.orphaned)}


def diff(expected: Mapping[str, str], actual: Mapping[str, str]) -> Drift:
    """Compare id -> checksum maps: `expected` from PostgreSQL, `actual` from the target."""
    return Drift(
        missing=sorted(expected.keys() - actual.keys()),
        stale=sorted(key for key in expected.keys() & actual.keys() if expected[key] != actual[key]),
        orphaned=sorted(actual.keys() - expected.keys()),
    )
