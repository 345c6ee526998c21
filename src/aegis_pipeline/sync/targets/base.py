"""The contract every sync target implements, and the document all of them receive.

A target is a store that follows PostgreSQL: it is set up once (`setup`), receives batches of active policies
(`upsert`) and ids to remove (`delete`), answers the consistency check (`bucket_digests`, `checksums`) and can be
rebuilt beside the live copy (`begin_rebuild`, `finish_rebuild`, `abort_rebuild`) so readers never see it empty.
Every write is an idempotent upsert by policy id carrying the record's version and checksum, so a batch written
twice (a retried run, an overlapping watermark) changes nothing.

Each target translates its engine's exceptions once, in `guard`, into `SyncFailedError` with its own DP code
(DP_3001 vectors, DP_3002 graph, DP_3003 search): callers never catch driver exceptions.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

from aegis_pipeline.common.errors import ErrorCode, PipelineError, SyncFailedError
from aegis_pipeline.domain.policy import PolicyContent
from aegis_pipeline.sync.digest import BucketDigest, bucket_of, digest_of

TARGET_NAMES = ("vectors", "graph", "search")
# The statuses of the policies each target holds: what users search holds only the catalogue (active policies);
# the graph keeps archived programmes too, marked (their node's `status`), for analysis (docs/lifecycle.md).
KEPT_STATUSES: dict[str, frozenset[str]] = {
    "vectors": frozenset({"active"}), "graph": frozenset({"active", "archived"}), "search": frozenset({"active"}),
}
EMBEDDED_CONTENT_CHARACTERS = 2000  # of a body, embedded by the vectors target (the search target indexes it all)


def embedding_text(title: str, content: str) -> str:
    """What the vectors target embeds: the title and the opening of the body, where an announcement says what the
    programme is. The cap bounds the model's memory and time (a 200,000-character body took 2.2 GB and 8 s to
    encode; 2,000 characters, 0.08 s)."""
    return f"{title}\n{content[:EMBEDDED_CONTENT_CHARACTERS]}"


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncDocument(PolicyContent):
    """One policy a target holds (KEPT_STATUSES) as the targets receive it (read from PostgreSQL by
    `sync.source`): the policy's content (`domain.policy.PolicyContent`) and what the sync adds. It stays in the
    sync, not the domain: its checksum, bucket and digest are the sync's own notions (`sync.digest`)."""

    id: str
    version: int
    checksum: str
    quality_score: float | None
    status: str                       # one of the target's KEPT_STATUSES
    canonical_id: str | None          # the policy this one duplicates (cold path), if any
    duplicate_ids: tuple[str, ...]    # policies that duplicate this one
    # `canonical_id` while that policy is active: the graph's DUPLICATE_OF link (a policy not active is no node)
    duplicate_of: str | None = None

    @property
    def bucket(self) -> int:
        return bucket_of(self.id)

    @property
    def digest(self) -> int:
        return digest_of(self.checksum)

    @property
    def embedding_text(self) -> str:
        return embedding_text(self.title, self.content)


@dataclass(frozen=True)
class SyncBatch:
    """Documents to upsert, from one run; `embeddings` (by document id) only for targets that need them."""

    run_id: str
    documents: Sequence[SyncDocument]
    embeddings: Mapping[str, Sequence[float]]


class SyncTarget(abc.ABC):
    """A store that follows PostgreSQL. Not thread-safe; open one per run, close it at the end."""

    name: ClassVar[str]          # "vectors", "graph", "search": CLI, watermarks, consistency report
    store_name: ClassVar[str]    # "milvus", "neo4j", "elasticsearch": events and metrics (design names)
    error_code: ClassVar[ErrorCode]
    needs_embeddings: ClassVar[bool] = False

    @classmethod
    @contextlib.contextmanager
    def guard(cls, operation: str) -> Iterator[None]:
        """Translate whatever the engine raises into SyncFailedError carrying this target's code."""
        try:
            yield
        except SyncFailedError:
            raise
        except Exception as error:
            detail = str(error) if isinstance(error, PipelineError) else f"{type(error).__name__}: {error}"
            raise SyncFailedError(f"{cls.store_name} {operation} failed: {detail}"[:500], code=cls.error_code,
                                  target=cls.name) from error

    @abc.abstractmethod
    def setup(self) -> None:
        """Create what the target needs (collection, index and alias, node and relationship types); idempotent."""

    @abc.abstractmethod
    def upsert(self, batch: SyncBatch) -> None:
        """Write each document, replacing any earlier copy of the same id."""

    @abc.abstractmethod
    def delete(self, ids: Sequence[str]) -> None:
        """Remove these ids; ids that are not there are ignored."""

    @abc.abstractmethod
    def flush(self) -> None:
        """Make every write so far visible to readers and to the consistency check."""

    @abc.abstractmethod
    def bucket_digests(self) -> dict[int, BucketDigest]:
        """The digest of every non-empty bucket (see `sync.digest`)."""

    @abc.abstractmethod
    def checksums(self, buckets: Collection[int]) -> dict[str, str]:
        """id -> checksum of every document in these buckets."""

    @abc.abstractmethod
    def begin_rebuild(self, run_id: str) -> None:
        """Start writing a complete new copy beside the live one; later upserts go to the new copy."""

    @abc.abstractmethod
    def finish_rebuild(self) -> None:
        """Make the new copy the live one at once and drop the old copy."""

    @abc.abstractmethod
    def abort_rebuild(self) -> None:
        """Drop the unfinished new copy; the live one is untouched."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> SyncTarget:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
