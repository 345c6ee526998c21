"""The consistency check's pure logic: bucket digests, the diff of id -> checksum maps, graph link digests."""

from __future__ import annotations

import hashlib

import pytest

from aegis_pipeline.sync.digest import (
    BUCKETS,
    BucketDigest,
    Drift,
    bucket_of,
    diff,
    differing_buckets,
    digest_of,
    link_key,
    links_digest,
    summarize,
)


def checksum(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


PG = {f"id-{i}": checksum(f"v1-{i}") for i in range(200)}


def test_bucket_and_digest_are_stable_and_in_range() -> None:
    assert bucket_of("id-1") == bucket_of("id-1")
    assert all(0 <= bucket_of(key) < BUCKETS for key in PG)
    assert digest_of("ffffffff0000") == 2**32 - 1


def test_equal_maps_have_equal_digests() -> None:
    assert differing_buckets(summarize(PG.items()), summarize(dict(reversed(PG.items())).items())) == set()


@pytest.mark.parametrize(("change", "expected"), [
    pytest.param(lambda target: target.pop("id-3"), Drift(missing=["id-3"]), id="missing"),
    pytest.param(lambda target: target.update({"id-4": checksum("v0-4")}), Drift(stale=["id-4"]), id="stale"),
    pytest.param(lambda target: target.update({"ghost": checksum("x")}), Drift(orphaned=["ghost"]), id="orphaned"),
])
def test_each_kind_of_drift_is_found_in_its_bucket_only(change, expected: Drift) -> None:
    target = dict(PG)
    change(target)
    buckets = differing_buckets(summarize(PG.items()), summarize(target.items()))
    [changed_id] = expected.missing + expected.stale + expected.orphaned
    assert buckets == {bucket_of(changed_id)}
    in_buckets = {key: value for key, value in PG.items() if bucket_of(key) in buckets}
    target_in_buckets = {key: value for key, value in target.items() if bucket_of(key) in buckets}
    assert diff(in_buckets, target_in_buckets) == expected


def test_an_empty_bucket_on_one_side_differs_and_an_absent_empty_one_does_not() -> None:
    assert differing_buckets({1: BucketDigest(2, 10)}, {}) == {1}
    assert differing_buckets({}, {5: BucketDigest(0, 0)}) == set()


def test_drift_counts() -> None:
    assert Drift(missing=["a"], stale=["b", "c"]).counts() == {"missing": 1, "stale": 2, "orphaned": 0}
    assert Drift(missing=["a"], stale=["b", "c"]).total == 3


def test_link_keys_are_32_bit_and_tell_labels_and_names_apart() -> None:
    keys = {link_key("Region", "서울"), link_key("Organization", "서울"), link_key("Region", "부산"),
            link_key("Policy", "id-1")}
    assert len(keys) == 4 and all(0 <= key < 2**32 for key in keys)
    assert link_key("Region", "서울") == link_key("Region", "서울")


def test_a_links_digest_ignores_order_and_changes_when_a_link_points_elsewhere() -> None:
    links = [("Organization", "중소벤처기업부"), ("Region", "서울"), ("Source", "bizinfo"), ("Policy", "id-1")]
    assert links_digest(links) == links_digest(reversed(links))
    assert links_digest([]) == 0
    for position, elsewhere in enumerate([("Organization", "환경부"), ("Region", "부산"), ("Source", "kstartup"),
                                          ("Policy", "id-2")]):
        repointed = [*links[:position], elsewhere, *links[position + 1:]]
        assert links_digest(repointed) != links_digest(links), elsewhere
    assert links_digest(links[:-1]) != links_digest(links)  # the DUPLICATE_OF link counts like any other
