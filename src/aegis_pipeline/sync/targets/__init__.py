"""The sync targets: one contract (`base.SyncTarget`) and one module per store (vectors, graph, search).

`open_target(name, settings)` builds the target a name stands for. May import: `settings`, `common`, `stores`,
`sync.digest`, `sync.embeddings` (the models and their dimensions).
"""

from __future__ import annotations

from aegis_pipeline.settings import Settings
from aegis_pipeline.sync.targets.base import TARGET_NAMES, SyncTarget


def open_target(name: str, settings: Settings) -> SyncTarget:
    """The target `name` ("vectors", "graph" or "search"), connected; raises SyncFailedError if it cannot be."""
    if name == "vectors":
        from aegis_pipeline.sync.targets.vectors import VectorsTarget

        return VectorsTarget.open(settings)
    if name == "graph":
        from aegis_pipeline.sync.targets.graph import GraphTarget

        return GraphTarget.open(settings)
    if name == "search":
        from aegis_pipeline.sync.targets.search import SearchTarget

        return SearchTarget.open(settings)
    raise ValueError(f"unknown sync target {name!r}; expected one of {', '.join(TARGET_NAMES)}")


__all__ = ["TARGET_NAMES", "SyncTarget", "open_target"]
