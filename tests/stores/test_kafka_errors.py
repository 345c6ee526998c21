"""`stores.kafka.translate_errors` keeps the nature of a Kafka error: what a retry can fix becomes the retriable
`StoreUnavailableError`, what the broker or the client refuses for good becomes the non-retriable
`StoreRefusedError`, so no caller retries it forever."""

from __future__ import annotations

import inspect

import aiokafka.errors as kafka_errors
import pytest

from aegis_pipeline.common.errors import ErrorCode, PipelineError, StoreRefusedError, StoreUnavailableError
from aegis_pipeline.common.retry import is_retriable
from aegis_pipeline.stores.kafka import OUTAGE_ERRORS, is_transient, translate_errors


def translated(error: BaseException) -> PipelineError:
    with pytest.raises(PipelineError) as caught, translate_errors("send events"):
        raise error
    assert caught.value.__cause__ is error
    return caught.value


TRANSIENT = [
    # aiokafka marks these retriable
    kafka_errors.KafkaConnectionError("Unable to bootstrap from [('127.0.0.1', 1)]"),
    kafka_errors.NoBrokersAvailable(),
    kafka_errors.NodeNotReadyError("node 1"),
    kafka_errors.RequestTimedOutError(),
    kafka_errors.NotLeaderForPartitionError(),
    kafka_errors.LeaderNotAvailableError(),
    kafka_errors.UnknownTopicOrPartitionError(),
    kafka_errors.NotEnoughReplicasError(),
    kafka_errors.CoordinatorNotAvailableError(),
    kafka_errors.KafkaStorageError(),
    # unflagged, but raised for an outage
    kafka_errors.KafkaError("Unable to get cluster metadata over all known brokers"),
    kafka_errors.KafkaTimeoutError(),
    kafka_errors.KafkaUnavailableError(),
    kafka_errors.BrokerNotAvailableError(),
    kafka_errors.ReplicaNotAvailableError(),
    kafka_errors.RebalanceInProgressError(),
    kafka_errors.UnknownMemberIdError(),
    kafka_errors.IllegalGenerationError(),
    # not Kafka's own
    ConnectionRefusedError(111, "Connection refused"),
    OSError("network unreachable"),
    TimeoutError(),
]

REFUSED = [
    kafka_errors.TopicAuthorizationFailedError("policy-events"),
    kafka_errors.GroupAuthorizationFailedError("aegis-hot-path"),
    kafka_errors.ClusterAuthorizationFailedError(),
    kafka_errors.TransactionalIdAuthorizationFailed(),
    kafka_errors.SaslAuthenticationFailed(),
    kafka_errors.AuthenticationFailedError(),
    kafka_errors.MessageSizeTooLargeError("The message is 2000000 bytes when serialized"),
    kafka_errors.RecordListTooLargeError(),
    kafka_errors.RecordTooLargeError(),
    kafka_errors.InvalidTopicError(),
    kafka_errors.InvalidRequestError(),
    kafka_errors.InvalidReplicationFactorError(),
    kafka_errors.PolicyViolationError(),
    kafka_errors.UnsupportedVersionError(),
    kafka_errors.IncompatibleBrokerVersion(),
    kafka_errors.KafkaConfigurationError("bad option"),
    kafka_errors.ProducerFenced(),
    kafka_errors.ProducerClosed(),
    kafka_errors.IllegalStateError(),
]


@pytest.mark.parametrize("error", TRANSIENT, ids=lambda error: type(error).__name__)
def test_what_a_retry_can_fix_stays_retriable(error: BaseException) -> None:
    result = translated(error)
    assert type(result) is StoreUnavailableError
    assert result.retriable and is_retriable(result)
    assert result.code is ErrorCode.BATCH_PROCESSING_ERROR
    assert result.details == {"store": "kafka"}
    assert str(result) == f"DP_4003: kafka send events failed: {type(error).__name__}"


@pytest.mark.parametrize("error", REFUSED, ids=lambda error: type(error).__name__)
def test_what_kafka_refuses_for_good_is_not_retriable(error: BaseException) -> None:
    result = translated(error)
    assert type(result) is StoreRefusedError
    assert not result.retriable and not is_retriable(result)
    assert result.code is ErrorCode.BATCH_PROCESSING_ERROR
    assert result.details == {"store": "kafka"}
    assert str(result).startswith("DP_4003: kafka send events refused: ")
    assert type(error).__name__ in str(result)  # aiokafka's message names the error (and the topic, the size)


def test_the_refusal_says_what_was_refused() -> None:
    result = translated(kafka_errors.TopicAuthorizationFailedError("policy-events"))
    assert str(result) == "DP_4003: kafka send events refused: [Error 29] TopicAuthorizationFailedError: policy-events"


def test_every_aiokafka_error_follows_its_flag_except_the_known_outages() -> None:
    """A new aiokafka error class is classified by its `retriable` flag; the exceptions are the listed outages."""
    classes = [value for value in vars(kafka_errors).values()
               if inspect.isclass(value) and issubclass(value, kafka_errors.KafkaError)
               and value is not kafka_errors.KafkaError]
    assert len(classes) > 80
    for error_class in classes:
        expected = bool(error_class.retriable) or issubclass(error_class, OUTAGE_ERRORS)
        assert is_transient(error_class.__new__(error_class)) is expected, error_class.__name__


def test_errors_that_are_not_kafkas_pass_through() -> None:
    with pytest.raises(ValueError, match="not a broker error"), translate_errors("send events"):
        raise ValueError("not a broker error")
    assert not is_transient(ValueError("x"))
