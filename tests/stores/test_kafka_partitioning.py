"""`stores.kafka.partition_for_key` must put every key where aiokafka's own partitioner does (the Java client's
murmur2): events sent by `send_all` and by a plain `send` of the same key must share a partition, or a consumer
could see a policy's versions out of order."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given, settings
from hypothesis import strategies as st

from aegis_pipeline.stores.kafka import partition_for_key

AIOKAFKA_PARTITIONER = DefaultPartitioner()


@settings(max_examples=2000)
@given(key=st.binary(max_size=200), partition_count=st.integers(min_value=1, max_value=200))
def test_a_key_goes_to_the_partition_aiokafka_chooses(key: bytes, partition_count: int) -> None:
    partitions = list(range(partition_count))
    assert partition_for_key(key, partitions, partitions) == AIOKAFKA_PARTITIONER(key, partitions, partitions)


def test_policy_id_keys_spread_like_aiokafka_over_six_partitions() -> None:
    partitions = list(range(6))
    keys = [f"{number:08x}-1c2d-4e5f-8a9b-0c1d2e3f4a5b".encode() for number in range(5000)]
    ours = [partition_for_key(key, partitions, partitions) for key in keys]
    assert ours == [AIOKAFKA_PARTITIONER(key, partitions, partitions) for key in keys]
    assert set(ours) == set(partitions)


def test_a_message_without_a_key_goes_to_an_available_partition() -> None:
    assert {partition_for_key(None, [0, 1, 2], [2]) for _ in range(50)} == {2}
    assert {partition_for_key(None, [0, 1, 2], []) for _ in range(200)} == {0, 1, 2}
