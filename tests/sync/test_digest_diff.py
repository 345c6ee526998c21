"""`sync.digest`, beyond tests/sync/test_sync_digest.py: the bucket sums themselves, what a bucket digest can and
cannot see, the diff of all three kinds at once, and the stability of the keys stored in the engines."""

from __future__ import annotations

import hashlib

from aegis_pipeline.sync.digest import (
    BucketDigest,
    Drift,
    bucket_of,
    diff,
    differing_buckets,
    digest_of,
    link_key,
    summarize,
    summarize_digests,
)


def test_summarize_digests_counts_and_sums_per_bucket() -> None:
    digests = [(7, 10), (3, 1), (7, 2**32 - 1), (7, 5), (3, 0)]
    assert summarize_digests(digests) == {7: BucketDigest(3, 10 + 2**32 - 1 + 5), 3: BucketDigest(2, 1)}
    assert summarize_digests([]) == {}


def test_summarize_puts_each_checksum_in_its_ids_bucket() -> None:
    pairs = [("id-1", "0000000a" + "0" * 56), ("id-2", "00000014" + "0" * 56), ("id-3", "ffffffff" + "0" * 56)]
    expected: dict[int, BucketDigest] = {}
    for policy_id, checksum in pairs:
        bucket = int(hashlib.md5(policy_id.encode()).hexdigest()[:8], 16) % 1024
        before = expected.get(bucket, BucketDigest(0, 0))
        expected[bucket] = BucketDigest(before.count + 1, before.total + int(checksum[:8], 16))
    assert summarize(pairs) == expected
    assert sum(digest.count for digest in expected.values()) == 3


def test_a_bucket_differs_by_count_alone_or_by_total_alone() -> None:
    assert differing_buckets({4: BucketDigest(2, 100)}, {4: BucketDigest(3, 100)}) == {4}
    assert differing_buckets({4: BucketDigest(2, 100)}, {4: BucketDigest(2, 101)}) == {4}
    assert differing_buckets({4: BucketDigest(2, 100), 9: BucketDigest(1, 1)},
                             {4: BucketDigest(2, 100), 9: BucketDigest(1, 1)}) == set()


def test_a_change_after_the_8th_hex_digit_is_invisible_to_the_bucket_digest_but_not_to_the_diff() -> None:
    # The documented limit of a 32-bit digest: the check then relies on the checksum (which carries the version).
    old, new = "1234abcd" + "0" * 56, "1234abcd" + "1" * 56
    assert digest_of(old) == digest_of(new)
    assert differing_buckets(summarize([("p", old)]), summarize([("p", new)])) == set()
    assert diff({"p": new}, {"p": old}) == Drift(stale=["p"])


def test_two_changes_in_one_bucket_that_cancel_out_in_the_total_still_differ_by_count() -> None:
    ids = [f"id-{n}" for n in range(5000)]
    by_bucket: dict[int, list[str]] = {}
    for policy_id in ids:
        by_bucket.setdefault(bucket_of(policy_id), []).append(policy_id)
    a, b, c = next(members for members in by_bucket.values() if len(members) >= 3)[:3]
    expected = {a: "00000005" + "0" * 56, b: "00000007" + "0" * 56}
    actual = {c: "0000000c" + "0" * 56}  # same total (12), one document instead of two
    assert differing_buckets(summarize(expected.items()), summarize(actual.items())) == {bucket_of(a)}
    assert diff(expected, actual) == Drift(missing=sorted([a, b]), orphaned=[c])


def test_diff_finds_every_kind_at_once_each_list_sorted() -> None:
    expected = {"p-3": "c3", "p-1": "c1", "p-2": "c2", "p-9": "c9", "p-5": "c5"}
    actual = {"p-2": "c2", "p-9": "old", "p-5": "old", "x-2": "c", "x-1": "c"}
    drift = diff(expected, actual)
    assert drift == Drift(missing=["p-1", "p-3"], stale=["p-5", "p-9"], orphaned=["x-1", "x-2"])
    assert drift.total == 6
    assert drift.counts() == {"missing": 2, "stale": 2, "orphaned": 2}


def test_diff_of_equal_or_empty_maps_is_no_drift() -> None:
    assert diff({}, {}) == Drift()
    assert diff({"a": "1"}, {"a": "1"}).total == 0
    assert diff({}, {"a": "1"}) == Drift(orphaned=["a"])
    assert diff({"a": "1"}, {}) == Drift(missing=["a"])


def test_keys_stored_in_the_engines_are_md5_based_and_do_not_change_between_releases() -> None:
    # Stored on every graph node and document: a different formula would make every policy stale at once.
    for label, name in [("Region", "서울"), ("Policy", "3f2c8a4e-0000-4000-8000-000000000001"), ("Source", "")]:
        assert link_key(label, name) == int(hashlib.md5(f"{label}\x1f{name}".encode()).hexdigest()[:8], 16)
    assert bucket_of("3f2c8a4e-0000-4000-8000-000000000001") == (
        int(hashlib.md5(b"3f2c8a4e-0000-4000-8000-000000000001").hexdigest()[:8], 16) % 1024)
    # The separator keeps the label and the name apart: ("ab", "c") is not ("a", "bc").
    assert link_key("ab", "c") != link_key("a", "bc")
